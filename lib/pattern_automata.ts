/**
 * The engines that match `--exclude` patterns (lib/name_patterns.ts parses them) in bounded time:
 * the patterns come from the network on a server's side, and a name matched by backtracking costs
 * in the worst case each pattern's length times the name's, which 1,000 patterns like `*aaa…ab`
 * reach. A name is matched by an NFA run bit-parallel ({@link NameMatcher}): its characters (at
 * most 255) times a word per 32 of the pattern's tokens. Anchored patterns are matched along the
 * path, an NFA over its segments whose states are kept for the last paths' folders
 * ({@link PathAutomaton}): asked in walk order, an entry costs one level, at most one name match
 * per distinct segment pattern and a bit per state. So an entry costs at most a few operations
 * per byte of the patterns, and a word per 32 of them (plus one a pattern) for each character of
 * its name, whatever its depth.
 *
 * @module
 */

/** One element of a name's pattern: a code point, `?`, `*`, or a class. */
export type Token =
  | { kind: "char"; code: number }
  | { kind: "one" }
  | { kind: "star" }
  | { kind: "class"; negated: boolean; ranges: number[] };

/** A pattern for one name (a path segment). */
export interface SegmentPattern {
  /** The name it matches, when it has no wildcard: compared as a string. */
  literal?: string;
  /** Otherwise the matcher of its tokens. */
  matcher?: NameMatcher;
}

/** A pattern matched against a whole path: its segments, `**` being `null`. */
export interface PathPattern {
  /** Its segments' patterns from the top, `null` for a `**` (runs of them merged into one). */
  segments: (SegmentPattern | null)[];
  /** Whether it matches folders only (it ended in `/`). */
  dirOnly: boolean;
}

/**
 * The code points of `text`, as {@link NameMatcher.matches} takes a name.
 *
 * @example
 * ```ts
 * import { codePoints } from "./pattern_automata.ts";
 *
 * codePoints("é1"); // [0xe9, 0x31]
 * ```
 */
export function codePoints(text: string): number[] {
  const codes: number[] = [];
  for (const char of text) codes.push(char.codePointAt(0)!);
  return codes;
}

/** Whether the token (not a star) matches the code point `c`. */
function matchOne(token: Token, c: number): boolean {
  switch (token.kind) {
    case "char":
      return token.code === c;
    case "one":
      return true;
    case "class": {
      const { ranges } = token;
      let inside = false;
      for (let r = 0; r < ranges.length && !inside; r += 2) {
        inside = c >= ranges[r] && c <= ranges[r + 1];
      }
      return inside !== token.negated;
    }
    default:
      return false;
  }
}

/**
 * Matches a name's tokens against whole names as an NFA run bit-parallel (shift-and): state i,
 * "the name so far matches the first i tokens", is bit i; a character moves each state whose
 * token takes it on by one, a `*`'s state stays, and a `*` lets the next state be reached without
 * a character (runs of `*` are one token, so that is one step). So a name costs its length times
 * ⌈(tokens + 1) / 32⌉ word operations, never the backtracking match's tokens times characters.
 * Its tables take 128 such words (one per ASCII character) and up to {@link MET_CHARACTERS} more
 * for others met, about 2 KiB a matcher with what goes with them: lib/name_patterns.ts bounds the
 * matchers a list of patterns makes (`MAX_WILD_SEGMENTS`).
 *
 * @example
 * ```ts
 * import { codePoints, NameMatcher } from "./pattern_automata.ts";
 *
 * // "*.md": a run of `*` is one token, as lib/name_patterns.ts parses them.
 * const matcher = new NameMatcher([
 *   { kind: "star" },
 *   ...codePoints(".md").map((code) => ({ kind: "char" as const, code })),
 * ]);
 * matcher.matches(codePoints("README.md")); // true
 * matcher.matches(codePoints("README.txt")); // false
 * ```
 */
export class NameMatcher {
  /** The tokens' count: the last state, the whole pattern matched. */
  #end: number;
  /** The characters a matching name has at least: the tokens but `*`. */
  #least = 0;
  #words: number;
  /** The states of `*` tokens. */
  #stars: Int32Array;
  /** For each ASCII character, the states whose token takes it. */
  #ascii: Int32Array;
  /** For other characters: the states of `?`, of each character, and the classes' tokens. */
  #any: Int32Array;
  #others = new Map<number, Int32Array>();
  #classes: number[] = [];
  #tokens: readonly Token[];
  /** What {@link #takesOf} worked out, by character. */
  #met = new Map<number, Int32Array>();
  #start: Int32Array;
  #now: Int32Array;
  #next: Int32Array;

  constructor(tokens: readonly Token[]) {
    this.#tokens = tokens;
    this.#end = tokens.length;
    const words = this.#words = (tokens.length >>> 5) + 1;
    this.#stars = new Int32Array(words);
    this.#ascii = new Int32Array(128 * words);
    this.#any = new Int32Array(words);
    tokens.forEach((token, i) => {
      const bit = 1 << (i & 31);
      if (token.kind === "star") this.#stars[i >>> 5] |= bit;
      else if (token.kind === "one") this.#any[i >>> 5] |= bit;
      else if (token.kind === "class") this.#classes.push(i);
      else if (token.code >= 128) {
        let states = this.#others.get(token.code);
        if (!states) this.#others.set(token.code, states = new Int32Array(words));
        states[i >>> 5] |= bit;
      }
      if (token.kind === "star") return;
      this.#least++;
      for (let c = 0; c < 128; c++) {
        if (matchOne(token, c)) this.#ascii[c * words + (i >>> 5)] |= bit;
      }
    });
    this.#start = new Int32Array(words);
    this.#start[0] = 1;
    this.#close(this.#start);
    this.#now = new Int32Array(words);
    this.#next = new Int32Array(words);
  }

  /** Whether the tokens match the whole of `name`, given as code points. */
  matches(name: readonly number[]): boolean {
    // Each token but `*` takes a character: a shorter name cannot match.
    if (name.length < this.#least) return false;
    const words = this.#words;
    const end = this.#end;
    if (words === 1) return this.#matchesInWord(name);
    const stars = this.#stars;
    let now = this.#now;
    let next = this.#next;
    now.set(this.#start);
    for (let i = 0; i < name.length; i++) {
      const c = name[i];
      const takes = c < 128 ? this.#ascii : this.#takesOf(c);
      const at = c < 128 ? c * words : 0;
      let carry = 0;
      let any = 0;
      for (let w = 0; w < words; w++) {
        const moved = now[w] & takes[at + w];
        next[w] = (moved << 1) | carry | (now[w] & stars[w]);
        carry = moved >>> 31;
        any |= next[w];
      }
      if (any === 0) return false;
      this.#close(next);
      [now, next] = [next, now];
    }
    return (now[end >>> 5] & (1 << (end & 31))) !== 0;
  }

  /** {@link matches} for 31 tokens or fewer: the states in one number. */
  #matchesInWord(name: readonly number[]): boolean {
    const stars = this.#stars[0];
    const ascii = this.#ascii;
    let now = this.#start[0];
    for (let i = 0; i < name.length; i++) {
      const c = name[i];
      const takes = c < 128 ? ascii[c] : this.#takesOf(c)[0];
      now = ((now & takes) << 1) | (now & stars);
      if (now === 0) return false;
      now |= (now & stars) << 1;
    }
    return (now & (1 << this.#end)) !== 0;
  }

  /**
   * The states whose token takes the code point `c`, not ASCII: those of `?`, of `c` itself, and
   * of the classes that hold it, kept for the next names (a few: a name has at most 127).
   */
  #takesOf(c: number): Int32Array {
    let takes = this.#met.get(c);
    if (takes) return takes;
    takes = this.#others.get(c)?.slice() ?? new Int32Array(this.#words);
    for (let w = 0; w < takes.length; w++) takes[w] |= this.#any[w];
    for (const i of this.#classes) {
      if (matchOne(this.#tokens[i], c)) takes[i >>> 5] |= 1 << (i & 31);
    }
    if (this.#met.size >= MET_CHARACTERS) this.#met.clear();
    this.#met.set(c, takes);
    return takes;
  }

  /** Adds to `states` those a `*` in them reaches without a character: the next. */
  #close(states: Int32Array): void {
    let carry = 0;
    for (let w = 0; w < states.length; w++) {
      const reached = states[w] & this.#stars[w];
      states[w] |= (reached << 1) | carry;
      carry = reached >>> 31;
    }
  }
}

/** Most characters beyond ASCII a {@link NameMatcher} keeps what its tokens do with. */
const MET_CHARACTERS = 64;

/**
 * Most levels of a path whose states a {@link PathAutomaton}'s chain keeps: a path within Linux's
 * PATH_MAX (4,096 bytes) has no more. Deeper levels are worked out again on each call.
 */
const MAX_CACHED_LEVELS = 2048;

/**
 * Most levels a chain's loss counts for when choosing which chain to cut: each call costs at most
 * this many levels more than from the chain that shares most with its path.
 */
const LOSS_WEIGHED = 4;

/** A state's segment when it is `**`, or the end of its pattern. */
const ANY_SEGMENTS = -1;
const END = -2;

/**
 * The anchored patterns as one NFA over a path's segments, matched along the path incrementally.
 *
 * Each pattern of S segments has S + 1 states, its positions: state i means "the path so far
 * matches the pattern's first i segments", the last means the whole pattern. On a segment of the
 * path, a state of a segment's pattern that matches it moves on one, a state of `**` stays (and
 * lets the next state be reached without taking a segment: runs of `**` are merged, so that is
 * one step). The set of all patterns' states after a path's prefix is a bitset, and a chain of
 * them, one a level, is kept for the folders of the last path asked about: callers ask in walk
 * order, so the next path shares all but its last segment with it, and a call advances over its
 * new segments only, each at most one match per distinct segment pattern and one bit per state:
 * O(the patterns' total size) whatever the path's depth. A call out of order recomputes from the
 * segments it shares with a chain (right, only slower). Two chains, since a walk's look-ahead
 * asks about folders ahead of the sender, in its own order.
 *
 * Memory: a level is ⌈states / 32⌉ words, states being at most half the patterns' bytes plus two
 * a pattern (18,384 at the limits: 2.3 KiB a level), and a chain keeps at most
 * {@link MAX_CACHED_LEVELS} levels, so at most about 9 MiB for both chains at the limits against
 * paths 2,048 deep; a few patterns take a few bytes a level.
 *
 * @example
 * ```ts
 * import { codePoints, NameMatcher, PathAutomaton } from "./pattern_automata.ts";
 *
 * // "/docs/**\/*.pdf", as lib/name_patterns.ts parses it.
 * const tokens = [
 *   { kind: "star" as const },
 *   ...codePoints(".pdf").map((code) => ({ kind: "char" as const, code })),
 * ];
 * const automaton = new PathAutomaton([{
 *   segments: [{ literal: "docs" }, null, { matcher: new NameMatcher(tokens) }],
 *   dirOnly: false,
 * }]);
 * automaton.matches(["docs", "a", "b.pdf"], false); // true
 * automaton.matches(["src", "b.pdf"], false); // false
 * ```
 */
export class PathAutomaton {
  /** For each state, its segment's index in #segments, {@link ANY_SEGMENTS} or {@link END}. */
  #kind: Int32Array;
  /** The distinct segments' patterns. */
  #segments: SegmentPattern[] = [];
  /** The states of `**`, to close a set over. */
  #anyStates: Int32Array;
  /** Each pattern's last state, and whether it matches folders only. */
  #ends: Int32Array;
  #dirOnly: Uint8Array;
  /** 32-bit words a state set takes. */
  #words: number;
  /** Each segment's match on the segment being advanced over: valid where #seen is #round. */
  #seen: Int32Array;
  #matched: Uint8Array;
  #round = 0;
  #chains: Chain[];
  /** Where states past the chains' levels are worked out. */
  #scratch: [Int32Array, Int32Array];
  #clock = 0;

  constructor(patterns: readonly PathPattern[]) {
    const index = new Map<SegmentPattern, number>();
    const kinds: number[] = [];
    const any: number[] = [];
    const ends: number[] = [];
    for (const { segments } of patterns) {
      for (const segment of segments) {
        if (segment === null) {
          any.push(kinds.length);
          kinds.push(ANY_SEGMENTS);
          continue;
        }
        let found = index.get(segment);
        if (found === undefined) {
          index.set(segment, found = this.#segments.length);
          this.#segments.push(segment);
        }
        kinds.push(found);
      }
      ends.push(kinds.length);
      kinds.push(END);
    }
    this.#kind = Int32Array.from(kinds);
    this.#anyStates = Int32Array.from(any);
    this.#ends = Int32Array.from(ends);
    this.#dirOnly = Uint8Array.from(patterns, (p) => p.dirOnly ? 1 : 0);
    this.#words = Math.ceil(kinds.length / 32);
    this.#seen = new Int32Array(this.#segments.length);
    this.#matched = new Uint8Array(this.#segments.length);
    this.#scratch = [new Int32Array(this.#words), new Int32Array(this.#words)];
    const start = new Int32Array(this.#words);
    let first = 0;
    for (const end of ends) {
      start[first >>> 5] |= 1 << (first & 31);
      first = end + 1;
    }
    this.#close(start);
    this.#chains = [new Chain(start), new Chain(start)];
  }

  /** Whether any pattern (a folders' one only if `isDir`) matches the whole path `parts`. */
  matches(parts: readonly string[], isDir: boolean): boolean {
    const states = this.#statesOf(parts, isDir);
    for (let p = 0; p < this.#ends.length; p++) {
      const end = this.#ends[p];
      if ((states[end >>> 5] & (1 << (end & 31))) !== 0 && (isDir || !this.#dirOnly[p])) {
        return true;
      }
    }
    return false;
  }

  /**
   * The states after `parts`, from the chain that costs least to reach them from. A file's last
   * level is worked out aside: no later path goes through a file, so it is not worth a chain's
   * levels (its siblings, asked next, would cut it again).
   */
  #statesOf(parts: readonly string[], isDir: boolean): Int32Array {
    const keep = isDir ? parts.length : parts.length - 1;
    let best: Chain | undefined;
    let bestShared = 0;
    let bestCost = Infinity;
    let bestLoss = Infinity;
    let from: Int32Array | undefined;
    for (const chain of this.#chains) {
      const shared = chain.shared(parts, keep);
      if (shared === keep) {
        // One of its levels already: read it, and leave the chain as it is.
        best = chain;
        bestShared = shared;
        from = chain.level(shared, this.#words);
        break;
      }
      // The segments to advance over now, and the cached levels lost by cutting the chain there,
      // counted only up to a few: a chain is taken from the other walk only to save more.
      const loss = chain.parts.length - shared;
      const cost = keep - shared + Math.min(loss, LOSS_WEIGHED);
      if (
        cost < bestCost ||
        (cost === bestCost && (loss < bestLoss || (loss === bestLoss && chain.used < best!.used)))
      ) {
        best = chain;
        bestShared = shared;
        bestCost = cost;
        bestLoss = loss;
      }
    }
    const chain = best!;
    chain.used = ++this.#clock;
    const words = this.#words;
    if (!from) {
      chain.parts.length = bestShared;
      from = chain.level(bestShared, words);
    }
    for (let i = bestShared; i < parts.length; i++) {
      let to: Int32Array;
      if (i < keep && i < MAX_CACHED_LEVELS) {
        to = chain.grow(i + 1, words);
        chain.parts.push(parts[i]);
      } else to = this.#scratch[i & 1];
      this.#advance(from, to, parts[i]);
      from = to;
    }
    return from;
  }

  /** Writes into `to` the states `from` reaches over the path's segment `name`. */
  #advance(from: Int32Array, to: Int32Array, name: string): void {
    to.fill(0);
    const round = ++this.#round;
    const kind = this.#kind;
    let codes: number[] | undefined;
    for (let w = 0; w < from.length; w++) {
      for (let word = from[w]; word !== 0; word &= word - 1) {
        const state = (w << 5) + 31 - Math.clz32(word & -word);
        const segment = kind[state];
        if (segment === ANY_SEGMENTS) {
          to[w] |= 1 << (state & 31);
        } else if (segment >= 0) {
          if (this.#seen[segment] !== round) {
            this.#seen[segment] = round;
            const pattern = this.#segments[segment];
            this.#matched[segment] = (pattern.literal !== undefined
                ? pattern.literal === name
                : pattern.matcher!.matches(codes ??= codePoints(name)))
              ? 1
              : 0;
          }
          if (this.#matched[segment]) to[(state + 1) >>> 5] |= 1 << ((state + 1) & 31);
        }
      }
    }
    this.#close(to);
  }

  /** Adds to `states` those a `**` in them reaches without taking a segment: the next. */
  #close(states: Int32Array): void {
    for (const state of this.#anyStates) {
      if ((states[state >>> 5] & (1 << (state & 31))) !== 0) {
        states[(state + 1) >>> 5] |= 1 << ((state + 1) & 31);
      }
    }
  }
}

/** A path's segments and the state set after each prefix of them: level i after i segments. */
class Chain {
  parts: string[] = [];
  /** Levels of #words words each, level 0 the start. */
  #levels: Int32Array;
  /** When it was last used, to break ties. */
  used = 0;

  constructor(start: Int32Array) {
    this.#levels = new Int32Array(start.length * 8);
    this.#levels.set(start);
  }

  /** How many of the first `most` segments of `parts` the chain's path shares, from the top. */
  shared(parts: readonly string[], most: number): number {
    most = Math.min(most, this.parts.length);
    let i = 0;
    while (i < most && parts[i] === this.parts[i]) i++;
    return i;
  }

  /** The states at `level`, which the chain holds. */
  level(level: number, words: number): Int32Array {
    return this.#levels.subarray(level * words, (level + 1) * words);
  }

  /** Room for `level` (the chain holds the ones before), returned to be written. */
  grow(level: number, words: number): Int32Array {
    const needed = (level + 1) * words;
    if (needed > this.#levels.length) {
      const most = (MAX_CACHED_LEVELS + 1) * words;
      const bigger = new Int32Array(Math.max(needed, Math.min(most, this.#levels.length * 2)));
      bigger.set(this.#levels);
      this.#levels = bigger;
    }
    return this.level(level, words);
  }
}
