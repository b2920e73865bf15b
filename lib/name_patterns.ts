/**
 * `--exclude` patterns: their syntax, their limits, and the list of them a transfer asks about
 * each path of its tree ({@link NamePatterns}). The patterns come from the network on a server's
 * side, so no RegExp is ever built from them (a pattern like `(a*)*b` turned into one can take
 * exponential time), nor is a name matched by backtracking: lib/pattern_automata.ts matches them,
 * in a few operations per byte of the patterns and a word per 32 of them for each character of a
 * name, whatever the path's depth.
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

import {
  codePoints,
  NameMatcher,
  PathAutomaton,
  type PathPattern,
  type SegmentPattern,
  type Token,
} from "./pattern_automata.ts";

/** Most patterns one transfer takes (a server refuses more: ERROR `bad_request`). */
export const MAX_PATTERNS = 1000;

/** Longest pattern, in UTF-8 bytes. */
export const MAX_PATTERN_BYTES = 1024;

/** Most bytes all patterns of one transfer add up to, in UTF-8: well within a REQUEST frame. */
export const MAX_PATTERNS_BYTES = 32 * 1024;

/**
 * Most distinct segments with a wildcard all patterns of one transfer hold: each is a matcher with
 * tables of its own (about 2 KiB), which a server builds for every request it is sent, so this
 * keeps a request's patterns to about 2 MiB where the byte limits alone allowed some 13 MiB.
 */
export const MAX_WILD_SEGMENTS = 1024;

/** A pattern, or a list of them, that breaks the rules above; the message says which and why. */
export class PatternError extends Error {
  override name = "PatternError";
  /** `message` names the pattern and the rule it breaks. */
  constructor(message: string) {
    super(message);
  }
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
  /** Distinct segments with a wildcard so far (see {@link MAX_WILD_SEGMENTS}). */
  #wild = 0;

  private constructor(sources: readonly string[]) {
    this.sources = sources;
  }

  /** No patterns at all: nothing is excluded. */
  static readonly none: NamePatterns = new NamePatterns([]);

  /**
   * Parses `sources`, refusing ({@link PatternError}) an empty pattern, one longer than
   * {@link MAX_PATTERN_BYTES}, more than {@link MAX_PATTERNS} or {@link MAX_PATTERNS_BYTES} in
   * all or {@link MAX_WILD_SEGMENTS} distinct segments with a wildcard, a segment that is empty,
   * `.` or `..`, an unclosed `[`, or a `\` at the end.
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
      if (found) return found;
      this.#segments.set(part, found = segmentPattern(part, bad));
      if (found.matcher && ++this.#wild > MAX_WILD_SEGMENTS) {
        throw new PatternError(
          `Exclude patterns too varied: over ${MAX_WILD_SEGMENTS} different names with ` +
            `wildcards in all`,
        );
      }
      return found;
    };
    const segments = parts.map((part) => part === "**" ? null : parsed(part));
    if (!anchored) {
      // "**" alone, without a "/", is any one name.
      const segment = segments[0] ?? parsed("*");
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
  if (wild) return { matcher: new NameMatcher(tokens) };
  const codes = tokens.map((token) => token.kind === "char" ? token.code : 0);
  return { literal: String.fromCodePoint(...codes) };
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
