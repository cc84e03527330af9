// The demo page: a chat through the relay, on the browser build of
// Socket (served by the relay as /mytosis-websocket.js). Wires the
// Socket, the form and the pictures to the view.

import {
  IMAGE_FRAMING_BYTES,
  IMAGE_TYPES,
  MAX_IMAGE_BYTES,
  MAX_NAME_LENGTH,
  MAX_TEXT_LENGTH,
  decodeMessage,
  encodeChat,
  encodeImage
} from './framing.js';
import { ChatView } from './chat-view.js';
import { nameForThisTab, saveName } from './names.js';

// How often the head count is asked of /stats.
const PEOPLE_POLL_INTERVAL = 3000;
const MIB = 1024 * 1024;

const config = readConfig();
const imageLimit = Math.min(MAX_IMAGE_BYTES, config.maxPayload - IMAGE_FRAMING_BYTES);
const encoder = new TextEncoder();
const view = new ChatView();
const nameInput = document.getElementById('name');
const textInput = document.getElementById('text');
const imageInput = document.getElementById('image');

let ownName = nameForThisTab();
nameInput.value = ownName;
nameInput.maxLength = MAX_NAME_LENGTH;
textInput.maxLength = MAX_TEXT_LENGTH;
imageInput.accept = IMAGE_TYPES.join(',');

// Text and binary pass as they are (the relay runs with `json: false`).
// Reconnects come quickly: a chat's relay is usually back in seconds.
const { Socket } = window.MytosisWebSocket;
const socket = new Socket(websocketUrl(config.path), {
  json: false,
  minReconnectionDelay: 500,
  maxReconnectionDelay: 4000,
  maxEnqueuedMessages: 50
});

view.setConnection('connecting');
view.setPeople(null);
socket.on('open', () => {
  view.setConnection('online');
  // The Socket sends what it queued before 'open'.
  view.settlePending();
  refreshPeople();
});
socket.on('close', () => {
  view.setConnection('offline');
  view.setPeople(null);
});
socket.messages.forEach(showReceived);
setInterval(refreshPeople, PEOPLE_POLL_INTERVAL);

nameInput.addEventListener('change', () => {
  ownName = saveName(nameInput.value);
  nameInput.value = ownName;
});

document.getElementById('composer').addEventListener('submit', (event) => {
  event.preventDefault();
  const text = textInput.value;
  if (text.trim() === '') return;
  const message = encodeChat(ownName, text);
  if (encoder.encode(message).length > config.maxPayload) {
    view.notice('That message is longer than this relay takes.');
    return;
  }
  if (send(message)) {
    view.addChat({ name: ownName, text, own: true, pending: socket.offline });
    textInput.value = '';
  }
});

imageInput.addEventListener('change', () => {
  const [file] = imageInput.files;
  // Cleared, so that picking the same file again is a change.
  imageInput.value = '';
  if (file !== undefined) shareImage(file);
});

document.addEventListener('paste', (event) => {
  const file = firstImage(event.clipboardData?.files);
  if (file === undefined) return;
  event.preventDefault();
  shareImage(file);
});

document.addEventListener('dragover', (event) => event.preventDefault());
document.addEventListener('drop', (event) => {
  event.preventDefault();
  const file = firstImage(event.dataTransfer?.files);
  if (file !== undefined) shareImage(file);
});

function showReceived(data) {
  const message = decodeMessage(data);
  if (message === null) return;
  if (message.type === 'chat') {
    view.addChat({ name: message.name, text: message.text, own: false });
  } else {
    const url = URL.createObjectURL(new Blob([message.bytes], { type: message.mime }));
    view.addImage({ name: message.name, url, own: false });
  }
}

async function shareImage(file) {
  if (!IMAGE_TYPES.includes(file.type)) {
    view.notice('Only PNG, JPEG, GIF, WebP, AVIF and BMP images can be shared.');
    return;
  }
  if (file.size > imageLimit) {
    view.notice(`That image is ${(file.size / MIB).toFixed(1)} MiB; the limit is ${(imageLimit / MIB).toFixed(1)} MiB.`);
    return;
  }
  const message = encodeImage(ownName, file.type, await file.arrayBuffer());
  if (send(message)) {
    view.addImage({ name: ownName, url: URL.createObjectURL(file), own: true, pending: socket.offline });
  }
}

/** Send, or say why not: offline, the Socket holds a bounded number. */
function send(message) {
  const sent = socket.send(message);
  if (!sent) view.notice('Too many messages are waiting for the connection; this one was not sent.');
  return sent;
}

async function refreshPeople() {
  if (socket.offline) return;
  try {
    const response = await fetch('/stats', { cache: 'no-store' });
    const { connections } = await response.json();
    if (!socket.offline) view.setPeople(Number.isInteger(connections) ? connections : null);
  } catch {
    // The relay went away meanwhile; 'close' has said so.
  }
}

function firstImage(files) {
  return [...(files ?? [])].find((file) => file.type.startsWith('image/'));
}

/** The relay's settings, which it writes into the page's <meta> tags. */
function readConfig() {
  const meta = (key) => document.querySelector(`meta[name="${key}"]`).content;
  return { path: meta('websocket-path'), maxPayload: Number(meta('max-payload')) };
}

function websocketUrl(path) {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  return `${scheme}://${location.host}${path}`;
}
