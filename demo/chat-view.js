// The page's DOM: the conversation, the connection's state and the head
// count. What peers send is only ever put in as text (textContent) or as
// an image from a Blob URL made here.

// The conversation keeps this many entries; older ones (and their
// images' memory) go.
const MAX_ENTRIES = 200;
// Within this many pixels of the bottom, new entries scroll into view.
const STICK_TO_BOTTOM = 80;

const STATUS_TEXT = {
  connecting: 'Connecting…',
  online: 'Online',
  offline: 'Offline'
};

export class ChatView {
  #log;
  #status;
  #statusText;
  #people;

  constructor() {
    this.#log = document.getElementById('log');
    this.#status = document.getElementById('status');
    this.#statusText = document.getElementById('status-text');
    this.#people = document.getElementById('people');
  }

  /** @param {String} state 'connecting', 'online' or 'offline' */
  setConnection(state) {
    this.#status.dataset.state = state;
    this.#statusText.textContent = STATUS_TEXT[state];
  }

  /** @param {(Number|null)} count People connected, or `null` when unknown */
  setPeople(count) {
    this.#people.textContent = count === null ? '–' : `${count} here`;
    this.#people.title = count === null ? 'Not known while offline' : `${count} connected to this relay, you included`;
  }

  /**
   * Show a chat line.
   *
   * @param {Object} line `{ name, text, own, pending }`: `own` for this
   *     tab's, `pending` while it waits to be sent
   */
  addChat({ name, text, own, pending = false }) {
    const body = document.createElement('p');
    body.className = 'text';
    body.textContent = text;
    this.#append(this.#entry('chat', name, own, pending), body);
  }

  /**
   * Show an image.
   *
   * @param {Object} image `{ name, url, own, pending }`: `url` a Blob URL,
   *     revoked when the entry goes
   */
  addImage({ name, url, own, pending = false }) {
    const picture = document.createElement('img');
    picture.className = 'picture';
    picture.alt = `Image from ${name}`;
    picture.decoding = 'async';
    picture.src = url;
    const entry = this.#entry('image', name, own, pending);
    // Its height is known once loaded: keep the newest entry in view.
    const stick = this.#nearBottom();
    picture.addEventListener('load', () => stick && this.#scrollToBottom(), { once: true });
    this.#append(entry, picture);
  }

  /** A line from the page itself (a refused image, a message too long). */
  notice(text) {
    const line = document.createElement('p');
    line.className = 'notice';
    line.textContent = text;
    this.#append(line);
  }

  /** The Socket sent what it held: no entry is pending any more. */
  settlePending() {
    for (const entry of this.#log.querySelectorAll('.entry.pending')) {
      entry.classList.remove('pending');
      entry.querySelector('.state').textContent = '';
    }
  }

  #entry(kind, name, own, pending) {
    const entry = document.createElement('article');
    entry.className = own ? 'entry own' : 'entry';
    entry.dataset.kind = kind;
    if (pending) entry.classList.add('pending');

    const meta = document.createElement('div');
    meta.className = 'meta';
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = own ? `${name} (you)` : name;
    const time = document.createElement('time');
    const now = new Date();
    time.dateTime = now.toISOString();
    time.textContent = now.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    const state = document.createElement('span');
    state.className = 'state';
    state.textContent = pending ? 'waiting to send' : '';
    meta.append(who, time, state);
    entry.append(meta);
    return entry;
  }

  #append(element, content) {
    if (content !== undefined) element.append(content);
    const stick = this.#nearBottom();
    this.#log.append(element);
    this.#prune();
    if (stick) this.#scrollToBottom();
  }

  #prune() {
    while (this.#log.childElementCount > MAX_ENTRIES) {
      const oldest = this.#log.firstElementChild;
      const picture = oldest.querySelector('img');
      if (picture !== null) URL.revokeObjectURL(picture.src);
      oldest.remove();
    }
  }

  #nearBottom() {
    const log = this.#log;
    return log.scrollHeight - log.scrollTop - log.clientHeight < STICK_TO_BOTTOM;
  }

  #scrollToBottom() {
    this.#log.scrollTop = this.#log.scrollHeight;
  }
}
