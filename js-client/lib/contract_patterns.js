'use strict';

/**
 * A schema's `pattern` read as pydantic reads it (lib/contracts.js,
 * docs/typed-contracts.md §3). pydantic checks patterns with Rust's regex
 * crate, whose syntax and classes differ from a JavaScript RegExp's: `\A`
 * and `\z` anchor the text, `\d` `\w` `\s` `\b` are Unicode (`\d` matches
 * `٣`), `.` matches `\r`, `(?i)` sets a flag, `\pL` and `\p{Greek}` name
 * properties, `\_` is a plain `_`. So a pattern is translated into an
 * equivalent RegExp with the `u` flag. A pattern only Python's `re` reads
 * (a lookaround, a backreference: pydantic's `regex_engine='python-re'`)
 * is read as `re` reads it (its `\w`, its `$` before a last newline). What
 * has no faithful translation (`(?x)`, a flag in mid-pattern, class set
 * operations, a property name JavaScript does not know) is not checked at
 * all, since the checker never refuses more than the schema says.
 */

/** The classes and assertions of a dialect, from its word and space characters. @private */
function dialect(word, space) {
  const isWord = `[${word}]`;
  const start = `(?<!${isWord})(?=${isWord})`;
  const end = `(?<=${isWord})(?!${isWord})`;
  return {
    classes: { d: '\\p{Nd}', D: '\\P{Nd}', s: `[${space}]`, S: `[^${space}]`, w: isWord, W: `[^${word}]` },
    inClass: { d: '\\p{Nd}', D: '\\P{Nd}', s: space, w: word }, // \S and \W have no form inside a class
    assertions: {
      A: '(?<![^])', // the start of the text, whatever the flags
      z: '(?![^])',
      Z: '(?![^])', // Python's end of the text
      b: `(?:${start}|${end})`,
      B: `(?:(?<=${isWord})(?=${isWord})|(?<!${isWord})(?!${isWord}))`,
      '<': start,
      '>': end
    },
    boundaries: { start, end, 'start-half': `(?<!${isWord})`, 'end-half': `(?!${isWord})` }
  };
}

// Rust's: \w is Alphabetic, marks, decimal digits, connector punctuation,
// joiners; \s White_Space. Python's: \w is str.isalnum() or `_` (no marks,
// all numbers), \s str.isspace() (White_Space and \x1c-\x1f).
const RUST = dialect('\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}', '\\p{White_Space}');
const PYTHON = dialect('\\p{L}\\p{N}_', '\\p{White_Space}\\x1c-\\x1f');
RUST.inClass.S = '\\P{White_Space}';
delete PYTHON.assertions['<']; // escaped punctuation in Python's `re`
delete PYTHON.assertions['>'];
// What only Python's `re` reads (a lookaround, a backreference, a comment, `\Z`, `{,n}`): its patterns.
const PYTHON_ONLY = /\(\?(?:=|!|<=|<!|P=|#)|\\[1-9Z]|\{,/;
// Rust's ASCII classes, `[[:alpha:]]`.
const ASCII_CLASSES = { alnum: '0-9A-Za-z', alpha: 'A-Za-z', ascii: '\\x00-\\x7F', blank: '\\t ', cntrl: '\\x00-\\x1F\\x7F', digit: '0-9', graph: '\\x21-\\x7E', lower: 'a-z',
  print: '\\x20-\\x7E', punct: '\\x21-\\x2F\\x3A-\\x40\\x5B-\\x60\\x7B-\\x7E', space: '\\t\\n\\x0B\\f\\r ', upper: 'A-Z', word: '0-9A-Za-z_', xdigit: '0-9A-Fa-f' }; // prettier-ignore
const CONTROL_ESCAPES = { a: 0x07, f: 0x0c, n: 0x0a, r: 0x0d, t: 0x09, v: 0x0b };
const SYNTAX = new Set('^$\\.*+?()[]{}|/');
const PROPERTY_KEYS = { sc: 'Script', script: 'Script', scx: 'Script_Extensions', scriptextensions: 'Script_Extensions', gc: 'General_Category', generalcategory: 'General_Category' };

class Untranslatable extends Error {} // a construct with no faithful JavaScript equivalent
class Malformed extends Error {} // no pattern in any dialect (an unclosed class)

/**
 * Compiles a pattern.
 * @param {string} source
 * @returns {RegExp|null|undefined} the RegExp; null: not checked (no faithful
 *   translation); undefined: no regular expression at all (`([a-z`).
 */
function compilePattern(source) {
  let translated = null;
  try {
    translated = translate(source);
  } catch (err) {
    if (err instanceof Untranslatable) return null;
    if (!(err instanceof Malformed)) throw err;
  }
  const re = translated && regExp(translated.source, `u${translated.flags}`);
  if (re) return re;
  // Not one for a RegExp: another dialect's (Python's `[[]`, say) is not checked; none's is refused.
  return regExp(source, 'u') !== null || regExp(source, '') !== null ? null : undefined;
}

/** @private */
function regExp(source, flags) {
  try {
    return new RegExp(source, flags);
  } catch {
    return null;
  }
}

/**
 * A Rust (or Python `re`) pattern as the source and flags of an equivalent
 * JavaScript RegExp under the `u` flag.
 * @throws {Untranslatable}
 * @private
 */
function translate(source) {
  const python = PYTHON_ONLY.test(source);
  const state = { source, at: 0, out: '', scopes: [{ m: false, s: false }], ignoreCase: false, atoms: false, python, d: python ? PYTHON : RUST };
  while (state.at < source.length) step(state);
  return { source: state.out, flags: state.ignoreCase ? 'i' : '' };
}

/** @private */
function step(state) {
  const { source } = state;
  const scope = state.scopes[state.scopes.length - 1];
  const ch = source[state.at];
  if (ch === '\\') return escape(state);
  if (ch === '[') return characterClass(state);
  if (ch === '(') return group(state);
  state.at += ch.length;
  if (ch === ')') {
    if (state.scopes.length > 1) state.scopes.pop();
    state.out += ')';
  } else if (ch === '.') {
    state.out += scope.s ? '[^]' : '[^\\n]'; // Rust's `.` stops at \n alone (a RegExp's at \r, \u2028 too)
  } else if (ch === '^') {
    state.out += scope.m ? '(?<![^\\n])' : '^';
  } else if (ch === '$') {
    state.out += scope.m ? '(?![^\\n])' : state.python ? '(?=\\n?(?![^]))' : '$'; // Python's: before a last \n too
  } else if (ch === '{') {
    const count = /^(\d*)(,\d*)?\}/.exec(source.slice(state.at));
    if (count === null || (count[1] === '' && count[2] === undefined)) {
      state.out += '\\{'; // Python's `re` reads it as a `{`
    } else {
      state.out += `{${count[1] || '0'}${count[2] ?? ''}}`; // Python's `{,3}` is `{0,3}`
      state.at += count[0].length;
    }
  } else {
    const code = source.codePointAt(state.at - 1);
    if (code > 0xffff) state.at += 1;
    if (!'*+?|'.includes(ch)) state.atoms = true;
    state.out += ch === '}' || ch === ']' ? `\\${ch}` : String.fromCodePoint(code); // a RegExp (u) wants those escaped
  }
}

/** @private */
function group(state) {
  const rest = state.source.slice(state.at);
  const scope = state.scopes[state.scopes.length - 1];
  let m;
  if ((m = /^\(\?P?<([^=!>][^>]*)>/.exec(rest))) {
    state.out += `(?<${m[1]}>`;
  } else if ((m = /^\(\?(?:=|!|<=|<!)/.exec(rest))) {
    state.out += m[0]; // a lookaround (Python's `re`): a RegExp's reads the same
  } else if ((m = /^\(\?P=([^)]+)\)/.exec(rest))) {
    state.out += `\\k<${m[1]}>`;
    state.at += m[0].length;
    return;
  } else if ((m = /^\(\?#[^)]*\)/.exec(rest))) {
    state.at += m[0].length; // a comment
    return;
  } else if ((m = /^\(\?([a-zA-Z]*)(?:-([a-zA-Z]*))?([:)])/.exec(rest))) {
    const flags = withFlags(state, scope, m[1], m[2] ?? '', m[3] === ':');
    state.at += m[0].length;
    if (m[3] === ')') {
      state.scopes[state.scopes.length - 1] = flags; // to the end of the enclosing group
    } else {
      state.scopes.push(flags);
      state.out += '(?:';
    }
    return;
  } else if ((m = /^\(\?/.exec(rest))) {
    throw new Untranslatable('an unknown group');
  } else {
    m = ['('];
    state.out += '(';
  }
  state.scopes.push({ ...scope });
  state.at += m[0].length;
}

/**
 * The scope's flags after `(?on-off)`: m and s are translated where they
 * apply; i only for the whole pattern, set before anything it would change.
 * @private
 */
function withFlags(state, scope, on, off, scoped) {
  const flags = { ...scope };
  for (const [letters, value] of [[on, true], [off, false]]) {
    for (const flag of letters) {
      if (flag === 'm' || flag === 's') flags[flag] = value;
      else if (flag === 'u' && value) continue; // Unicode: already so
      else if (flag !== 'i') throw new Untranslatable(`the flag ${flag}`);
      else if (value === state.ignoreCase) continue;
      else if (value && !scoped && !state.atoms && state.scopes.length === 1) state.ignoreCase = true;
      else throw new Untranslatable('case-insensitive in part of the pattern');
    }
  }
  return flags;
}

/** An escape outside a class. @private */
function escape(state) {
  const { source } = state;
  const c = source[state.at + 1];
  state.at += 2;
  if (c === undefined) {
    state.out += '\\'; // no escape at all: the RegExp refuses it too
  } else if (state.d.classes[c] !== undefined) {
    state.out += state.d.classes[c];
  } else if (c === 'b' && source[state.at] === '{' && !state.python) {
    const name = /^\{([a-z-]+)\}/.exec(source.slice(state.at));
    if (name === null || state.d.boundaries[name[1]] === undefined) throw new Untranslatable('a word boundary');
    state.out += state.d.boundaries[name[1]];
    state.at += name[0].length;
    return;
  } else if (state.d.assertions[c] !== undefined) {
    state.out += state.d.assertions[c];
    return;
  } else if (c === 'p' || c === 'P') {
    state.out += property(state, c);
  } else if (/[1-9]/.test(c)) {
    const digits = /^\d*/.exec(source.slice(state.at))[0];
    state.out += `\\${c}${digits}`; // a backreference (Python's `re`)
    state.at += digits.length;
    return;
  } else if (c === 'k' && source[state.at] === '<') {
    state.out += '\\k'; // a named backreference
    return;
  } else {
    state.out += literal(codePoint(state, c), false);
  }
  state.atoms = true;
}

/**
 * A character class, `[...]`: Rust's nested classes (not negated) and
 * ASCII classes (`[[:alpha:]]`) are inlined; a `-` that makes no range is literal.
 * @private
 */
function characterClass(state) {
  state.at += 1;
  const negated = state.source[state.at] === '^';
  if (negated) state.at += 1;
  state.out += `[${negated ? '^' : ''}${classItems(state)}]`;
  state.atoms = true;
}

/** The items of a class up to its `]`, as a RegExp's class writes them. @private */
function classItems(state) {
  const { source } = state;
  let out = '';
  let first = true;
  for (;;) {
    if (state.at >= source.length) throw new Malformed('an unclosed class');
    const ch = source[state.at];
    if (ch === ']' && !first) {
      state.at += 1;
      return out;
    }
    first = false;
    if (/^(&&|--|~~)/.test(source.slice(state.at))) throw new Untranslatable('a class set operation');
    const item = classItem(state);
    if (item.char !== undefined && source[state.at] === '-' && source[state.at + 1] !== ']' && state.at + 1 < source.length) {
      state.at += 1;
      const end = classItem(state);
      out += end.char !== undefined ? `${literal(item.char, true)}-${literal(end.char, true)}` : `${literal(item.char, true)}\\-${end.text}`;
    } else {
      out += item.char !== undefined ? literal(item.char, true) : item.text;
    }
  }
}

/** One item of a class: a character ({char}) or a set of them ({text}). @private */
function classItem(state) {
  const { source } = state;
  const ch = source[state.at];
  if (ch === '[') {
    const ascii = /^\[:(\^?)([a-z]+):\]/.exec(source.slice(state.at));
    if (ascii !== null) {
      if (ascii[1] === '^' || ASCII_CLASSES[ascii[2]] === undefined) throw new Untranslatable('an ASCII class');
      state.at += ascii[0].length;
      return { text: ASCII_CLASSES[ascii[2]] };
    }
    state.at += 1;
    if (source[state.at] === '^') throw new Untranslatable('a negated nested class');
    return { text: classItems(state) };
  }
  if (ch !== '\\') {
    const code = source.codePointAt(state.at);
    state.at += code > 0xffff ? 2 : 1;
    return { char: code };
  }
  const c = source[state.at + 1];
  state.at += 2;
  if (c === undefined) throw new Malformed('an unclosed class');
  if (state.d.inClass[c] !== undefined) return { text: state.d.inClass[c] };
  if (c === 'W' || c === 'S') throw new Untranslatable(`\\${c} in a class`);
  if (c === 'p' || c === 'P') return { text: property(state, c) };
  if (c === 'b') return { char: 0x08 }; // Python's backspace
  return { char: codePoint(state, c) };
}

/**
 * The code point an escape `\c` stands for (past it: its digits), or the
 * character itself when it is punctuation or not ASCII.
 * @private
 */
function codePoint(state, c) {
  const rest = state.source.slice(state.at);
  let m;
  if (CONTROL_ESCAPES[c] !== undefined) return CONTROL_ESCAPES[c];
  if ((c === 'x' || c === 'u' || c === 'U') && (m = /^\{([0-9A-Fa-f]{1,8})\}/.exec(rest))) {
    state.at += m[0].length;
    return checked(parseInt(m[1], 16));
  }
  const width = { x: 2, u: 4, U: 8 }[c];
  if (width !== undefined && (m = new RegExp(`^[0-9A-Fa-f]{${width}}`).exec(rest))) {
    state.at += width;
    return checked(parseInt(m[0], 16));
  }
  if (c === '0' && !/^\d/.test(rest)) return 0;
  const code = c.codePointAt(0);
  if (/[A-Za-z0-9]/.test(c)) throw new Untranslatable(`the escape \\${c}`);
  if (code > 0xffff) state.at += 1;
  return code;
}

/** @private */
function checked(code) {
  if (code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) throw new Untranslatable('not a Unicode scalar value');
  return code;
}

/** A code point as a RegExp (`u`) writes it, in a class or not. @private */
function literal(code, inClass) {
  const ch = String.fromCodePoint(code);
  if (code < 0x20 || code === 0x7f || (code >= 0x80 && code < 0xa0)) return `\\u{${code.toString(16)}}`;
  if (SYNTAX.has(ch) || (inClass && ch === '-')) return `\\${ch}`;
  return ch;
}

/**
 * `\pL`, `\p{Greek}`, `\p{sc=Greek}`, `\P{...}`: Rust reads the names
 * loosely (`\p{greek}`) and a bare script name as a Script; a RegExp wants
 * them exact, a script as `Script=`.
 * @private
 */
function property(state, p) {
  const { source } = state;
  let name;
  if (source[state.at] === '{') {
    const end = source.indexOf('}', state.at);
    if (end < 0) throw new Untranslatable('an unclosed property');
    name = source.slice(state.at + 1, end).trim();
    state.at = end + 1;
  } else {
    name = source[state.at] ?? '';
    state.at += 1;
  }
  let negate = p === 'P';
  const pair = /^([^=!]+?)\s*(!?=)\s*(.+)$/.exec(name);
  let candidates;
  if (pair !== null) {
    const key = PROPERTY_KEYS[pair[1].toLowerCase().replace(/[\s_-]/g, '')];
    if (key === undefined) throw new Untranslatable(`the property ${name}`);
    if (pair[2] === '!=') negate = !negate;
    candidates = [pair[3], titled(pair[3])].map((value) => `${key}=${value}`);
  } else {
    candidates = [name, titled(name), `Script=${name}`, `Script=${titled(name)}`];
  }
  const found = candidates.find((candidate) => regExp(`\\p{${candidate}}`, 'u') !== null);
  if (found === undefined) throw new Untranslatable(`the property ${name}`);
  return `\\${negate ? 'P' : 'p'}{${found}}`;
}

/** `old italic` → `Old_Italic`, `lu` → `Lu`. @private */
function titled(name) {
  return name.split(/[\s_-]+/).map((word) => word.charAt(0).toUpperCase() + word.slice(1).toLowerCase()).join('_');
}

module.exports = { compilePattern };
