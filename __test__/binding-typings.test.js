'use strict';

// The JS facade against the addon's generated typings (binding.d.ts, which
// `napi build` writes next to binding.js): every method lib/ calls on a
// NativeServer or NativeSocket is declared, the options lib/ passes to
// their constructors are fields of the generated option interfaces (and
// every required field is passed), and the address and the stats the
// Server hands out have the fields and types index.d.ts promises. Skipped
// without binding.d.ts.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { describe, test } = require('node:test');

const ROOT = path.resolve(__dirname, '..');
const LIB = path.join(ROOT, 'lib');
const BINDING = path.join(ROOT, 'binding.d.ts');
const generated = fs.existsSync(BINDING) ? fs.readFileSync(BINDING, 'utf8') : null;
const skip = generated === null ? 'binding.d.ts is missing: run `npm run build`' : false;

/** The body of `export declare class Name {...}` or `export interface Name {...}`. */
function declaration(source, kind, name) {
  const start = new RegExp(`export (?:declare )?${kind} ${name}\\b[^{]*\\{`).exec(source);
  assert.ok(start, `${kind} ${name} is declared`);
  const open = start.index + start[0].length - 1;
  return source.slice(open + 1, matching(source, open));
}

/** The index of the bracket closing the one at `open`. */
function matching(source, open) {
  const pairs = { '{': '}', '(': ')', '[': ']' };
  const stack = [];
  for (let i = open; i < source.length; i++) {
    const c = source[i];
    if (c in pairs) stack.push(pairs[c]);
    else if (c === stack[stack.length - 1]) {
      stack.pop();
      if (stack.length === 0) return i;
    }
  }
  throw new Error(`no bracket closes the one at ${open}`);
}

/** Method names of a class body: `name(` at the start of a line. */
function methods(body) {
  return new Set([...body.matchAll(/^\s*(?:static\s+)?([A-Za-z_$][\w$]*)\s*\(/gm)].map((m) => m[1]));
}

/**
 * The fields of an interface body, each with whether it is optional and
 * its type as written (to the end of its line, without a `;` or `,`).
 */
function members(body) {
  const found = new Map();
  for (const m of body.matchAll(/^[ \t]*(?:readonly\s+)?([A-Za-z_$][\w$]*)(\??)[ \t]*:(.*)$/gm)) {
    found.set(m[1], { optional: m[2] === '?', type: m[3].trim().replace(/[;,]$/, '').trim() });
  }
  return found;
}

/** Field names of an interface body, with whether each is optional. */
function fields(body) {
  return new Map([...members(body)].map(([name, { optional }]) => [name, optional]));
}

/** Each field of an interface body as `name -> '?: type'` or `': type'`. */
function signatures(body) {
  return new Map([...members(body)].map(([name, { optional, type }]) => [name, `${optional ? '?' : ''}: ${type}`]));
}

/**
 * The keys of the options object passed to `new Name(` in `source`: the
 * first object literal after it, or, when the first argument is a call of
 * a function of that file (`new Name(nativeOptions(options), ...)`), the
 * object literal that function returns.
 */
function constructorKeys(source, name) {
  let at = source.indexOf(`new ${name}(`);
  assert.ok(at >= 0, `lib/ constructs ${name}`);
  const helper = /^\s*([A-Za-z_$][\w$]*)\(/.exec(source.slice(at + `new ${name}(`.length));
  if (helper !== null) {
    at = source.indexOf(`function ${helper[1]}(`);
    assert.ok(at >= 0, `${helper[1]} is a function of the file that constructs ${name}`);
    at = source.indexOf('return', at);
  }
  const open = source.indexOf('{', at);
  const body = source.slice(open + 1, matching(source, open));
  // Split at the object's own commas, not those of nested values.
  const keys = [];
  let depth = 0;
  let part = '';
  for (const c of body + ',') {
    if ('{(['.includes(c)) depth++;
    else if ('})]'.includes(c)) depth--;
    if (c === ',' && depth === 0) {
      const key = /^\s*(?:\/\/[^\n]*\n\s*)*([A-Za-z_$][\w$]*)/.exec(part);
      if (key) keys.push(key[1]);
      part = '';
    } else {
      part += c;
    }
  }
  return keys;
}

const sources = Object.fromEntries(
  fs
    .readdirSync(LIB)
    .filter((file) => file.endsWith('.js'))
    .map((file) => [file, fs.readFileSync(path.join(LIB, file), 'utf8')])
);

// native-transport.js drives a NativeSocket; every other file of lib/ that
// calls `native.x(...)` drives a NativeServer. native.js is the loader and
// holds no instance.
const SOCKET_FILES = new Set(['native-transport.js']);
const NOT_INSTANCES = new Set(['native.js']);

/** `{ file, method }` for every `native.method(` or `#native.method(` call. */
function nativeCalls(files) {
  const calls = [];
  for (const file of files) {
    for (const m of sources[file].matchAll(/(?:\.|\b)#?native\.([A-Za-z_$][\w$]*)\(/g)) {
      calls.push({ file, method: m[1] });
    }
  }
  return calls;
}

describe('lib/ against binding.d.ts', { skip }, () => {
  const files = Object.keys(sources).filter((file) => !NOT_INSTANCES.has(file));
  const cases = [
    ['NativeServer', files.filter((file) => !SOCKET_FILES.has(file)), 'server.js', 'NativeServerOptions'],
    ['NativeSocket', files.filter((file) => SOCKET_FILES.has(file)), 'native-transport.js', 'NativeSocketOptions']
  ];

  for (const [className, classFiles, constructingFile, optionsName] of cases) {
    test(`every ${className} method lib/ calls is declared`, () => {
      const declared = methods(declaration(generated, 'class', className));
      const calls = nativeCalls(classFiles);
      assert.ok(calls.length > 0, `lib/ calls ${className} methods`);
      const missing = calls.filter(({ method }) => !declared.has(method));
      assert.deepEqual(
        missing.map(({ file, method }) => `lib/${file}: ${method}`),
        [],
        `declared: ${[...declared].join(', ')}`
      );
    });

    test(`the options lib/ passes to new ${className} are those of ${optionsName}`, () => {
      const declared = fields(declaration(generated, 'interface', optionsName));
      const passed = constructorKeys(sources[constructingFile], className);
      assert.ok(passed.length > 0, `lib/${constructingFile} passes options`);
      assert.deepEqual(
        passed.filter((key) => !declared.has(key)),
        [],
        `passed but not declared in ${optionsName}`
      );
      const required = [...declared].filter(([, optional]) => !optional).map(([key]) => key);
      assert.deepEqual(
        required.filter((key) => !passed.includes(key)),
        [],
        `required by ${optionsName} but not passed`
      );
    });
  }

  // What the Server hands out as the addon returns it: index.d.ts must
  // promise exactly the fields, with the types, that binding.d.ts declares.
  for (const name of ['AddressInfo', 'ServerStats']) {
    test(`index.d.ts's ${name} has the fields and types of the addon's`, () => {
      const typings = fs.readFileSync(path.join(ROOT, 'index.d.ts'), 'utf8');
      const promised = signatures(declaration(typings, 'interface', name));
      const returned = signatures(declaration(generated, 'interface', name));
      assert.ok(promised.size > 0, `index.d.ts's ${name} has fields`);
      const missing = (from, to) =>
        [...from].filter(([key, type]) => to.get(key) !== type).map(([key, type]) => `${key}${type}`);
      assert.deepEqual(missing(promised, returned), [], `index.d.ts's ${name} fields not so in binding.d.ts`);
      assert.deepEqual(missing(returned, promised), [], `binding.d.ts's ${name} fields not so in index.d.ts`);
    });
  }
});

describe('the parsers of this test', () => {
  test('find methods, fields and constructor keys', () => {
    const source = `export declare class A {
  constructor(o: O)
  send(payload: Payload): boolean
  static make(): A
}
export interface O {
  a: number
  b?: string
  /** doc: not a field */
  readonly c: Array<{ x: number }>
}`;
    assert.deepEqual([...methods(declaration(source, 'class', 'A'))].sort(), ['constructor', 'make', 'send']);
    assert.deepEqual(
      [...fields(declaration(source, 'interface', 'O'))],
      [
        ['a', false],
        ['b', true],
        ['c', false]
      ]
    );
    assert.deepEqual(
      [...signatures(declaration(source, 'interface', 'O'))],
      [
        ['a', ': number'],
        ['b', '?: string'],
        ['c', ': Array<{ x: number }>']
      ]
    );
    assert.deepEqual(
      [...signatures('\n  closes: Record<string, number>;\n  /** n: not a field */\n  n?: number,\n')],
      [
        ['closes', ': Record<string, number>'],
        ['n', '?: number']
      ]
    );
    const js = `x = new A(
      {
        a: f(1, 2),
        // a comment
        b: { y: [1, 2] },
        c
      },
      cb
    );`;
    assert.deepEqual(constructorKeys(js, 'A'), ['a', 'b', 'c']);
  });
});
