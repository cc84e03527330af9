'use strict';

// The longest wait setTimeout and setInterval take (2^31 - 1 ms); a longer
// one fires at once.
const MAX_TIMER = 2 ** 31 - 1;

/**
 * What holds the process open while a Server listens or a Socket connects:
 * a timer that never fires, referencing its owner (so a live owner is never
 * collected). `unref()` and `ref()` apply to the timer held now and to any
 * held later. Browsers' timers have neither method, and need none.
 */
class KeepAlive {
  #owner;
  #timer = null;
  #unref = false;

  /** @param {Object} owner What the timer keeps alive */
  constructor(owner) {
    this.#owner = owner;
  }

  /** Hold the process (once: holding again is a no-op). */
  hold() {
    this.#timer ??= setInterval(() => this.#owner, MAX_TIMER);
    if (this.#unref) this.#timer.unref?.();
  }

  /** Stop holding it. */
  release() {
    clearInterval(this.#timer);
    this.#timer = null;
  }

  unref() {
    this.#unref = true;
    this.#timer?.unref?.();
  }

  ref() {
    this.#unref = false;
    this.#timer?.ref?.();
  }
}

module.exports = { KeepAlive, MAX_TIMER };
