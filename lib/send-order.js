'use strict';

/**
 * Keeps an owner's sends in call order when some payloads are not ready yet
 * (a Blob is read asynchronously): while one is pending, every later send
 * waits behind it, and `close()` too. With nothing pending, a send goes
 * straight through.
 */
class SendOrder {
  #pending = [];
  #onReadError;

  /**
   * @param {Function} onReadError Called with the error when a pending
   *     payload fails; only that send is skipped
   */
  constructor(onReadError) {
    this.#onReadError = onReadError;
  }

  /**
   * Run `deliver(payload)` now, or after the sends still pending.
   *
   * @param {*} payload A payload, or a Promise of one
   * @param {Function} deliver Hands the ready payload on
   * @param {*} [whenDeferred=true] What to return when the send must wait
   * @return {*} What `deliver` returned, or `whenDeferred`
   */
  submit(payload, deliver, whenDeferred = true) {
    if (this.#pending.length === 0 && !(payload instanceof Promise)) {
      return deliver(payload);
    }
    this.#pending.push({ payload, deliver });
    if (this.#pending.length === 1) this.#drain();
    return whenDeferred;
  }

  async #drain() {
    while (this.#pending.length > 0) {
      const { payload, deliver } = this.#pending[0];
      try {
        deliver(await payload);
      } catch (err) {
        this.#onReadError(err);
      }
      this.#pending.shift();
    }
  }
}

module.exports = SendOrder;
