// How the demo's pages talk through the relay, which forwards every
// message as it came; so each page checks what it receives and drops what
// does not fit.
//
// - A chat line is a text message, JSON: {"type":"chat","name":N,"text":T}.
// - An image is ONE binary message: a 2-byte big-endian length L, then L
//   bytes of UTF-8 JSON {"type":"image","name":N,"mime":M}, then the
//   image's bytes.

export const MAX_NAME_LENGTH = 32;
export const MAX_TEXT_LENGTH = 2000;
export const MAX_IMAGE_BYTES = 8 * 1024 * 1024;
// Room for the length and the header of an image message.
export const IMAGE_FRAMING_BYTES = 2 + 1024;
// What the pages show as images: raster types a browser decodes; no SVG.
export const IMAGE_TYPES = ['image/png', 'image/jpeg', 'image/gif', 'image/webp', 'image/avif', 'image/bmp'];

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder('utf-8', { fatal: true });

function isValidName(name) {
  return typeof name === 'string' && name.trim() !== '' && name.length <= MAX_NAME_LENGTH;
}

/** A chat line as its text message. */
export function encodeChat(name, text) {
  return JSON.stringify({ type: 'chat', name, text });
}

/**
 * An image as its binary message.
 *
 * @param {String} name The sender's name
 * @param {String} mime One of IMAGE_TYPES
 * @param {ArrayBuffer} bytes The image file
 * @return {Uint8Array} The message
 */
export function encodeImage(name, mime, bytes) {
  const header = encoder.encode(JSON.stringify({ type: 'image', name, mime }));
  const message = new Uint8Array(2 + header.length + bytes.byteLength);
  new DataView(message.buffer).setUint16(0, header.length);
  message.set(header, 2);
  message.set(new Uint8Array(bytes), 2 + header.length);
  return message;
}

/**
 * What a received message says, or `null` when it is not a well-formed
 * message of the demo (another client may send anything).
 *
 * @param {(String|ArrayBuffer)} data The message as the Socket delivers it
 * @return {(Object|null)} `{ type: 'chat', name, text }` or
 *     `{ type: 'image', name, mime, bytes }`
 */
export function decodeMessage(data) {
  return typeof data === 'string' ? decodeChat(data) : decodeImage(data);
}

function decodeChat(text) {
  const message = parseJson(text);
  const valid =
    message?.type === 'chat' &&
    isValidName(message.name) &&
    typeof message.text === 'string' &&
    message.text.trim() !== '' &&
    message.text.length <= MAX_TEXT_LENGTH;
  return valid ? { type: 'chat', name: message.name, text: message.text } : null;
}

function decodeImage(buffer) {
  if (!(buffer instanceof ArrayBuffer) || buffer.byteLength < 2) return null;
  const headerLength = new DataView(buffer).getUint16(0);
  if (2 + headerLength > IMAGE_FRAMING_BYTES || 2 + headerLength >= buffer.byteLength) return null;
  let header;
  try {
    header = parseJson(strictDecoder.decode(new Uint8Array(buffer, 2, headerLength)));
  } catch {
    return null;
  }
  const bytes = new Uint8Array(buffer, 2 + headerLength);
  const valid =
    header?.type === 'image' &&
    isValidName(header.name) &&
    IMAGE_TYPES.includes(header.mime) &&
    bytes.length <= MAX_IMAGE_BYTES;
  return valid ? { type: 'image', name: header.name, mime: header.mime, bytes } : null;
}

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
