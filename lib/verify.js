'use strict';

/**
 * Decide an upgrade the way `ws` users expect: `verifyClient(info)` (sync
 * or async) or ws's `verifyClient(info, cb)`, then `handleProtocols`.
 *
 * - a falsy verdict refuses with 401;
 * - an object whose `status` is a number from 400 to 599 refuses with that
 *   status, `reason` as the body and optional `headers`;
 * - a throw or rejection refuses with 500 and is reported through
 *   `onThrow`;
 * - anything else accepts and becomes `connection.context`.
 *
 * @param {Object} options The Server's `verifyClient` and `handleProtocols`
 * @param {Object} info `{ origin, headers, remoteAddress, url, req }`
 * @param {String[]} protocols The subprotocols the client offers
 * @param {Function} onThrow Receives what user code threw
 * @return {Promise<Object>} `{ accept, status, reason, headers, protocol,
 *     context }`; `headers` as `[name, value, ...]`
 */
async function decideUpgrade(options, info, protocols, onThrow) {
  let verdict = true;
  try {
    if (options.verifyClient !== undefined) verdict = await verify(options.verifyClient, info);
    if (!verdict) return refusal(401, 'Unauthorized');
    if (isRefusal(verdict)) {
      return refusal(verdict.status, String(verdict.reason ?? ''), verdict.headers);
    }
    let protocol = protocols[0] ?? '';
    if (options.handleProtocols !== undefined) {
      const chosen = await options.handleProtocols(protocols, info);
      protocol = protocols.includes(chosen) ? chosen : '';
    }
    const context = options.verifyClient === undefined ? undefined : verdict;
    return { accept: true, status: 101, reason: '', headers: [], protocol, context };
  } catch (err) {
    onThrow(err);
    return refusal(500, 'Internal Server Error');
  }
}

function verify(verifyClient, info) {
  if (verifyClient.length < 2) return verifyClient(info);
  // ws's callback form: cb(result, code, message, headers).
  return new Promise((resolve) => {
    verifyClient(info, (result, code, message, headers) => {
      resolve(result ? result : { status: code ?? 401, reason: message ?? 'Unauthorized', headers });
    });
  });
}

function isRefusal(verdict) {
  return (
    typeof verdict === 'object' &&
    verdict !== null &&
    typeof verdict.status === 'number' &&
    verdict.status >= 400 &&
    verdict.status <= 599
  );
}

function refusal(status, reason, headers = {}) {
  const flat = Object.entries(headers ?? {}).flatMap(([name, value]) => [name, String(value)]);
  return { accept: false, status, reason, headers: flat, protocol: '', context: undefined };
}

module.exports = decideUpgrade;
