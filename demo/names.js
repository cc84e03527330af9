// A name for each tab: made up on the first visit, kept for the tab's
// life (sessionStorage), and changed by the person when they like.

import { MAX_NAME_LENGTH } from './framing.js';

const STORAGE_KEY = 'mytosis-relay-demo:name';
const ADJECTIVES = ['Amber', 'Brisk', 'Calm', 'Dapper', 'Eager', 'Fuzzy', 'Gentle', 'Hazel', 'Jolly', 'Lucky', 'Mellow', 'Nimble', 'Quiet', 'Rosy', 'Sunny', 'Teal'];
const ANIMALS = ['Badger', 'Crane', 'Dolphin', 'Falcon', 'Gecko', 'Heron', 'Koala', 'Lynx', 'Marmot', 'Newt', 'Otter', 'Panda', 'Quokka', 'Robin', 'Seal', 'Wombat'];

/** The tab's name: the one it had, or a new one. */
export function nameForThisTab() {
  return readStored() ?? saveName(inventName());
}

/**
 * Keep `wanted` as the tab's name, tidied: trimmed and cut to the longest
 * name the pages accept; an empty one gets a new made-up name.
 *
 * @return {String} The name kept
 */
export function saveName(wanted) {
  const name = wanted.trim().slice(0, MAX_NAME_LENGTH) || inventName();
  try {
    sessionStorage.setItem(STORAGE_KEY, name);
  } catch {
    // Storage may be off: the name then lasts as long as the page.
  }
  return name;
}

function readStored() {
  try {
    return sessionStorage.getItem(STORAGE_KEY);
  } catch {
    return null;
  }
}

function inventName() {
  const [a, b] = crypto.getRandomValues(new Uint8Array(2));
  return `${ADJECTIVES[a % ADJECTIVES.length]} ${ANIMALS[b % ANIMALS.length]}`;
}
