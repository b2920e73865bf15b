/**
 * `--exclude` patterns: their syntax, their limits, and matching a tree's paths against them in
 * bounded time. The patterns come from the network on a server's side, so no RegExp is ever built
 * from them (a pattern like `(a*)*b` turned into one can take exponential time), nor is a name
 * matched by backtracking, whose worst case (each pattern's length times the name's) 1,000
 * patterns like `*aaa…ab` reach. A name is matched by an NFA run bit-parallel
 * ({@link NameMatcher}): its characters (at most 255) times a word per 32 of the pattern's tokens.
 * Anchored patterns are matched along the path, an NFA over its segments whose states are kept
 * for the last paths' folders ({@link PathAutomaton}): asked in walk order, an entry costs one
 * level, at most one name match per distinct segment pattern and a bit per state. So an entry
 * costs at most a few operations per byte of the patterns, and a word per 32 of them (plus one a
 * pattern) for each character of its name, whatever its depth.
 *
 * The syntax, as docs/client.md ("Leaving names out") gives it: a pattern without `/` (other than
 * a trailing one) matches the name of a file or folder at any depth; one with a `/` elsewhere is
 * anchored at the tree's top (a leading `/` only anchors); a trailing `/` matches folders only.
 * `*` matches any run of characters within one name, `?` one character, `[abc]`, `[a-z]` and
 * `[!x]` (or `[^x]`) one of a class, `\` makes the next character literal, and `**` as a whole
 * segment any number of segments (none included; at the end, at least one: `a/**` is what `a`
 * holds, not `a`).
 *
 * @module
 */

/** Most patterns one transfer takes (a server refuses more: ERROR `bad_request`). */
export const MAX_PATTERNS = 1000;

/** Longest pattern, in UTF-8 bytes. */
export const MAX_PATTERN_BYTES = 1024;

/** Most bytes all patterns of one transfer add up to, in UTF-8: well within a REQUEST frame. */
export const MAX_PATTERNS_BYTES = 32 * 1024;

/** A pattern, or a list of them, that breaks the rules above; the message says which and why. */
export class PatternError extends Error {
  override name = "PatternError";
  /** `message` names the pattern and the rule it breaks. */
  constructor(message: string) {
    super(message);
  }
}

/** One element of a name's pattern: a code point, `?`, `*`, or a class. */
type Token =
  | { kind: "char"; code: number }
  | { kind: "one" }
  | { kind: "star" }
  | { kind: "class"; negated: boolean; ranges: number[] };

/** A pattern for one name (a path segment). */
interface SegmentPattern {
  /** The name it matches, when it has no wildcard: compared as a string. */
  literal?: string;
  /** Otherwise its tokens, */
  tokens: Token[];
  /** and their matcher. */
  matcher?: NameMatcher;
}

/** A pattern matched against a whole path: its segments, `**` being `null`. */
interface PathPattern {
  segments: (SegmentPattern | null)[];
  dirOnly: boolean;
}

const encoder = new TextEncoder();

/**
 * A list of exclusion patterns, parsed and checked once, then asked about each path of a tree.
 *
 * @example
 * ```ts
 * import { NamePatterns } from "./name_patterns.ts";
 *
 * const patterns = NamePatterns.parse(["*.tmp", "node_modules/", "/build", "docs/**\/*.pdf"]);
 * patterns.excludes("src/a.tmp", false); // true: a name at any depth
 * patterns.excludes("web/node_modules", true); // true: a folder of that name
 * patterns.excludes("web/node_modules", false); // false: "/" at the end is for folders only
 * patterns.excludes("src/build", true); // false: "/build" is anchored at the top
 * patterns.excludes("docs/a/b/c.pdf", false); // true
 * ```
 */
export class NamePatterns {
  /** The patterns as given, for the wire. */
  readonly sources: readonly string[];
  /** Names without wildcards that match at any depth, files and folders alike. */
  #names = new Set<string>();
  /** The same, for folders only. */
  #dirNames = new Set<string>();
  /** Names with wildcards that match at any depth. */
  #unanchored: { segment: SegmentPattern; dirOnly: boolean }[] = [];
  /** Patterns matched against the whole path. */
  #anchored: PathPattern[] = [];
  /** The same segment's pattern once, however many patterns hold it: matched once a segment. */
  #segments = new Map<string, SegmentPattern>();
  /** The anchored patterns compiled, on the first path that needs them. */
  #paths?: PathAutomaton;

  private constructor(sources: readonly string[]) {
    this.sources = sources;
  }

  /** No patterns at all: nothing is excluded. */
  static readonly none: NamePatterns = new NamePatterns([]);

  /**
   * Parses `sources`, refusing ({@link PatternError}) an empty pattern, one longer than
   * {@link MAX_PATTERN_BYTES}, more than {@link MAX_PATTERNS} or {@link MAX_PATTERNS_BYTES} in
   * all, a segment that is empty, `.` or `..`, an unclosed `[`, or a `\` at the end.
   */
  static parse(sources: readonly string[]): NamePatterns {
    if (sources.length > MAX_PATTERNS) {
      throw new PatternError(
        `Too many exclude patterns: ${sources.length}, at most ${MAX_PATTERNS}`,
      );
    }
    let total = 0;
    const patterns = new NamePatterns([...sources]);
    for (const source of sources) {
      const bytes = encoder.encode(source).length;
      if (bytes > MAX_PATTERN_BYTES) {
        throw new PatternError(
          `Exclude pattern ${shown(source)} is too long: ${bytes} bytes, at most ` +
            `${MAX_PATTERN_BYTES}`,
        );
      }
      total += bytes;
      if (total > MAX_PATTERNS_BYTES) {
        throw new PatternError(
          `Exclude patterns too long: over ${MAX_PATTERNS_BYTES} bytes in all`,
        );
      }
      patterns.#add(source);
    }
    return patterns;
  }

  /** Whether there are no patterns. */
  get empty(): boolean {
    return this.sources.length === 0;
  }

  #add(source: string): void {
    const bad = (why: string) => new PatternError(`Bad exclude pattern ${shown(source)}: ${why}`);
    if (source === "") throw bad("it is empty");
    let text = source;
    const dirOnly = text.endsWith("/");
    if (dirOnly) text = text.slice(0, -1);
    const anchored = text.includes("/");
    if (text.startsWith("/")) text = text.slice(1);
    const parts = text.split("/");
    for (const part of parts) {
      if (part === "" || part === "." || part === "..") {
        throw bad(`it has an empty, "." or ".." segment`);
      }
    }
    const parsed = (part: string) => {
      let found = this.#segments.get(part);
      if (!found) this.#segments.set(part, found = segmentPattern(part, bad));
      return found;
    };
    const segments = parts.map((part) => part === "**" ? null : parsed(part));
    if (!anchored) {
      // "**" alone, without a "/", is any one name.
      const segment = segments[0] ?? segmentPattern("*", bad);
      if (segment.literal !== undefined) {
        (dirOnly ? this.#dirNames : this.#names).add(segment.literal);
      } else this.#unanchored.push({ segment, dirOnly });
      return;
    }
    // Runs of "**" are one; a "**" at the end is at least one segment: what the folder holds.
    const merged = segments.filter((s, i) => !(s === null && segments[i - 1] === null));
    if (merged.at(-1) === null) merged.splice(-1, 0, parsed("*"));
    this.#anchored.push({ segments: merged, dirOnly });
  }

  /**
   * Whether `path` (relative to the tree's top, `/`-separated, as a manifest has it) is excluded;
   * `isDir` says whether it is a folder, for patterns that end in `/`.
   */
  excludes(path: string, isDir: boolean): boolean {
    if (this.sources.length === 0) return false;
    const name = path.slice(path.lastIndexOf("/") + 1);
    if (this.#names.has(name) || (isDir && this.#dirNames.has(name))) return true;
    let codes: number[] | undefined;
    for (const { segment, dirOnly } of this.#unanchored) {
      if (dirOnly && !isDir) continue;
      codes ??= codePoints(name);
      if (segment.matcher!.matches(codes)) return true;
    }
    if (this.#anchored.length === 0) return false;
    this.#paths ??= new PathAutomaton(this.#anchored);
    return this.#paths.matches(path.split("/"), isDir);
  }
}

/** A pattern quoted for a message, clipped. */
function shown(source: string): string {
  return JSON.stringify(source.length > 80 ? `${source.slice(0, 80)}…` : source);
}

function codePoints(text: string): number[] {
  const codes: number[] = [];
  for (const char of text) codes.push(char.codePointAt(0)!);
  return codes;
}

/** Parses one segment of a pattern (no `/` in it). */
function segmentPattern(text: string, bad: (why: string) => PatternError): SegmentPattern {
  const chars = codePoints(text);
  const tokens: Token[] = [];
  let wild = false;
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i];
    if (c === BACKSLASH) {
      if (i + 1 >= chars.length) throw bad("it ends with a \\");
      tokens.push({ kind: "char", code: chars[++i] });
    } else if (c === STAR) {
      wild = true;
      // "**" inside a name is "*": only a whole segment of it crosses folders.
      if (tokens.at(-1)?.kind !== "star") tokens.push({ kind: "star" });
    } else if (c === QUESTION) {
      wild = true;
      tokens.push({ kind: "one" });
    } else if (c === OPEN) {
      wild = true;
      i = classAt(chars, i, tokens, bad);
    } else tokens.push({ kind: "char", code: c });
  }
  if (wild) return { tokens, matcher: new NameMatcher(tokens) };
  const codes = tokens.map((token) => token.kind === "char" ? token.code : 0);
  return { literal: String.fromCodePoint(...codes), tokens };
}

/** Parses the class that opens at `chars[open]` into `tokens`; the index of its `]`. */
function classAt(
  chars: number[],
  open: number,
  tokens: Token[],
  bad: (why: string) => PatternError,
): number {
  let i = open + 1;
  const negated = chars[i] === BANG || chars[i] === CARET;
  if (negated) i++;
  const ranges: number[] = [];
  // A "]" first is a member, as in every glob.
  for (let first = true; i < chars.length && (first || chars[i] !== CLOSE); first = false) {
    let low = chars[i++];
    if (low === BACKSLASH) {
      if (i >= chars.length) break;
      low = chars[i++];
    }
    let high = low;
    if (chars[i] === DASH && i + 1 < chars.length && chars[i + 1] !== CLOSE) {
      i++;
      high = chars[i++];
      if (high === BACKSLASH) {
        if (i >= chars.length) break;
        high = chars[i++];
      }
      if (high < low) throw bad("a class range runs backwards");
    }
    ranges.push(low, high);
  }
  if (i >= chars.length) throw bad("a [ is not closed");
  tokens.push({ kind: "class", negated, ranges });
  return i;
}

const BACKSLASH = 0x5c;
const STAR = 0x2a;
const QUESTION = 0x3f;
const OPEN = 0x5b;
const CLOSE = 0x5d;
const BANG = 0x21;
const CARET = 0x5e;
const DASH = 0x2d;

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
 * for others met: at most about 1.5 MiB for all patterns at the limits.
 */
class NameMatcher {
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
 */
class PathAutomaton {
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
