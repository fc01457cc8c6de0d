'use strict';

/**
 * The members of a contract interface (lib/typegen.js,
 * docs/typed-contracts.md §5): an exact channel is a property; patterns
 * become template-literal index signatures (`orders.*` and `orders.>` both
 * `` `orders.${string}` ``, since a template's `${string}` matches dots
 * too). TypeScript requires every property whose name a template matches
 * to fit that template's type, and gives a name several templates match
 * the intersection of their types. So each signature's type is the union
 * of every entry that may apply under it: the patterns whose templates
 * overlap it and the exact channels it matches, each entry tagged with the
 * channel or pattern that serves it (`channel: "orders.*"`). From those
 * tags `client.typed<Api>()` (index.d.ts, `ContractEntry`) picks what
 * the server would route a call to: the exact channel, else the entries of
 * the patterns that match the name by the wire's rules (§4).
 */

const { isPattern } = require('./channels');

/**
 * The members, in the channels' order: a template's signature where its
 * first pattern comes.
 * @param {string[]} channels the sorted channel names.
 * @param {Map<string, {request: string, response: string}>} types each channel's request and response types.
 * @param {(key: string) => string} propertyKey a channel name as a property key.
 * @returns {string[]} the lines of the members.
 */
function channelMembers(channels, types, propertyKey) {
  const templates = new Map(); // template text -> its parts (literal text between the holes)
  for (const channel of channels) {
    if (isPattern(channel)) {
      const parts = templateParts(channel);
      templates.set(templateText(parts), parts);
    }
  }
  const entry = (channel, tagged) => {
    const { request, response } = types.get(channel);
    return `{ request: ${request}; response: ${response}${tagged ? `; channel: ${JSON.stringify(channel)}` : ''} }`;
  };
  const members = [];
  const written = new Set();
  for (const channel of channels) {
    if (!isPattern(channel)) {
      const covered = [...templates.values()].some((parts) => templateMatches(parts, channel));
      members.push(`  ${propertyKey(channel)}: ${entry(channel, covered)};`);
      continue;
    }
    const parts = templateParts(channel);
    const text = templateText(parts);
    if (written.has(text)) continue;
    written.add(text);
    const under = channels.filter((c) => (isPattern(c) ? overlap(templateParts(c), parts) : templateMatches(parts, c)));
    const entries = under.map((c) => entry(c, true));
    members.push(entries.length === 1
      ? `  [channel: \`${text}\`]: ${entries[0]};`
      : `  [channel: \`${text}\`]:\n${entries.map((e) => `    | ${e}`).join('\n')};`);
  }
  return members;
}

/**
 * A pattern's template as the literal text between its holes: `a.*.b` is
 * `['a.', '.b']`, `orders.>` is `['orders.', '']`.
 * @param {string} pattern
 * @returns {string[]}
 * @private
 */
function templateParts(pattern) {
  const parts = [''];
  pattern.split('.').forEach((token, i) => {
    const sep = i === 0 ? '' : '.';
    if (token === '*' || token === '>') {
      parts[parts.length - 1] += sep;
      parts.push('');
    } else {
      parts[parts.length - 1] += sep + token;
    }
  });
  return parts;
}

/** The template literal's text (without its backquotes). @private */
function templateText(parts) {
  return parts.map((p) => p.replace(/[`\\]/g, '\\$&').replace(/\$\{/g, '\\${')).join('${string}');
}

/**
 * Whether TypeScript's template matches a name: each `${string}` hole
 * takes any text, dots and the empty string included.
 * @private
 */
function templateMatches(parts, name) {
  const first = parts[0];
  const last = parts[parts.length - 1];
  if (name.length < first.length + last.length || !name.startsWith(first) || !name.endsWith(last)) return false;
  let at = first.length;
  const end = name.length - last.length;
  for (const part of parts.slice(1, -1)) {
    const found = name.indexOf(part, at);
    if (found === -1 || found + part.length > end) return false;
    at = found + part.length;
  }
  return true;
}

/**
 * Whether some name matches both templates. Each has a hole, which can
 * hold the other's inner text: they do when their fixed beginnings agree
 * (one starts the other) and so do their endings.
 * @private
 */
function overlap(a, b) {
  const [a0, b0, a1, b1] = [a[0], b[0], a[a.length - 1], b[b.length - 1]];
  return (a0.startsWith(b0) || b0.startsWith(a0)) && (a1.endsWith(b1) || b1.endsWith(a1));
}

module.exports = { channelMembers, templateParts, templateText, templateMatches, overlap };
