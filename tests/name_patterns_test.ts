/**
 * The `--exclude` matcher (lib/name_patterns.ts): its syntax, what it matches and does not, its
 * limits, and that hostile patterns finish (no RegExp, no exponential backtracking).
 */

import assert from "node:assert/strict";
import {
  MAX_PATTERN_BYTES,
  MAX_PATTERNS,
  MAX_PATTERNS_BYTES,
  MAX_WILD_SEGMENTS,
  NamePatterns,
  PatternError,
} from "../lib/name_patterns.ts";

/** Asserts that `parse` throws a {@link PatternError} whose message holds `text`. */
function throwsPattern(parse: () => unknown, text: string): void {
  assert.throws(parse, (error) => error instanceof PatternError && error.message.includes(text));
}

/** Which of `paths` (a trailing "/" marks a folder) `patterns` exclude. */
function excluded(patterns: string[], paths: string[]): string[] {
  const set = NamePatterns.parse(patterns);
  return paths.filter((p) => set.excludes(p.replace(/\/$/, ""), p.endsWith("/")));
}

Deno.test("a pattern without a slash matches a name at any depth", () => {
  assert.deepEqual(
    excluded(["node_modules"], ["node_modules/", "a/node_modules/", "a/b/node_modules", "node"]),
    ["node_modules/", "a/node_modules/", "a/b/node_modules"],
  );
  assert.deepEqual(
    excluded(["*.tmp"], ["x.tmp", "a/b/y.tmp", "a.tmp/", "x.tmpl", "tmp", "a.tmp/b"]),
    ["x.tmp", "a/b/y.tmp", "a.tmp/"],
  );
  // "*" stays within one name: the folder's name is not part of it.
  assert.deepEqual(excluded(["a*b"], ["a/b", "axb", "a/xb"]), ["axb"]);
});

Deno.test("a slash anchors a pattern at the tree's top; a leading one only anchors", () => {
  assert.deepEqual(excluded(["/build"], ["build/", "src/build/", "build2"]), ["build/"]);
  assert.deepEqual(
    excluded(["docs/*.pdf"], ["docs/a.pdf", "docs/x/a.pdf", "x/docs/a.pdf", "docs/a.txt"]),
    ["docs/a.pdf"],
  );
  assert.deepEqual(excluded(["/docs/a.pdf"], ["docs/a.pdf", "a.pdf"]), ["docs/a.pdf"]);
});

Deno.test("a trailing slash matches folders only", () => {
  assert.deepEqual(excluded(["build/"], ["build/", "a/build/", "build", "a/build"]), [
    "build/",
    "a/build/",
  ]);
  assert.deepEqual(excluded(["/out/"], ["out/", "out", "a/out/"]), ["out/"]);
  assert.deepEqual(excluded(["*.d/"], ["x.d/", "x.d"]), ["x.d/"]);
});

Deno.test("** matches any number of segments, and at the end what a folder holds", () => {
  const paths = ["a/b", "a/x/b", "a/x/y/b", "b", "c/b", "a", "a/x"];
  assert.deepEqual(excluded(["a/**/b"], paths), ["a/b", "a/x/b", "a/x/y/b"]);
  assert.deepEqual(excluded(["**/b"], paths), ["a/b", "a/x/b", "a/x/y/b", "b", "c/b"]);
  // Not "a" itself: its folder is kept, empty.
  assert.deepEqual(excluded(["a/**"], paths), ["a/b", "a/x/b", "a/x/y/b", "a/x"]);
  assert.deepEqual(excluded(["a/**/**/b"], ["a/b", "a/x/y/b"]), ["a/b", "a/x/y/b"]);
  assert.deepEqual(excluded(["**"], ["a", "b/c/"]), ["a", "b/c/"]);
  // Inside a name, "**" is "*".
  assert.deepEqual(excluded(["x**y"], ["xay", "x/y"]), ["xay"]);
  assert.deepEqual(
    excluded(["docs/**/*.pdf"], ["docs/a.pdf", "docs/x/y/a.pdf", "a.pdf", "docs/x/a.txt"]),
    ["docs/a.pdf", "docs/x/y/a.pdf"],
  );
});

Deno.test("?, classes and escapes", () => {
  assert.deepEqual(excluded(["?.c"], ["a.c", "ab.c", ".c", "é.c"]), ["a.c", "é.c"]);
  assert.deepEqual(excluded(["[abc].txt"], ["a.txt", "d.txt", "[.txt"]), ["a.txt"]);
  assert.deepEqual(excluded(["x[a-c]"], ["xa", "xb", "xc", "xd"]), ["xa", "xb", "xc"]);
  assert.deepEqual(excluded(["x[!a-c]"], ["xa", "xd", "x"]), ["xd"]);
  assert.deepEqual(excluded(["x[^a]"], ["xa", "xb"]), ["xb"]);
  assert.deepEqual(excluded(["[]]"], ["]", "a"]), ["]"]);
  assert.deepEqual(excluded(["[a-]"], ["a", "-", "b"]), ["a", "-"]);
  assert.deepEqual(excluded(["\\*"], ["*", "a"]), ["*"]);
  assert.deepEqual(excluded(["a\\?"], ["a?", "ab"]), ["a?"]);
  assert.deepEqual(excluded(["[\\]]"], ["]", "\\"]), ["]"]);
  // Astral characters are one character each.
  assert.deepEqual(excluded(["?"], ["😀", "ab"]), ["😀"]);
});

Deno.test("no patterns exclude nothing", () => {
  assert.equal(NamePatterns.none.excludes("a", true), false);
  assert(NamePatterns.parse([]).empty);
  assert.equal(NamePatterns.parse(["x"]).empty, false);
});

Deno.test("bad patterns and lists are refused with a PatternError", () => {
  for (const bad of ["", "/", "//", "a//b", "a/./b", "../x", "a/..", "[abc", "x\\", "[z-a]"]) {
    throwsPattern(() => NamePatterns.parse([bad]), "Bad exclude pattern");
  }
  throwsPattern(() => NamePatterns.parse(["x".repeat(MAX_PATTERN_BYTES + 1)]), "too long");
  // Counted in UTF-8 bytes: 342 three-byte characters are over 1024 bytes.
  throwsPattern(() => NamePatterns.parse(["€".repeat(342)]), "too long");
  NamePatterns.parse(["x".repeat(MAX_PATTERN_BYTES)]);
  throwsPattern(
    () => NamePatterns.parse(Array.from({ length: MAX_PATTERNS + 1 }, (_, i) => `p${i}`)),
    "Too many",
  );
  NamePatterns.parse(Array.from({ length: MAX_PATTERNS }, (_, i) => `p${i}`));
  const each = MAX_PATTERNS_BYTES / 32;
  throwsPattern(
    () => NamePatterns.parse(Array.from({ length: 33 }, (_, i) => `${i}`.padEnd(each, "x"))),
    "in all",
  );
  // Each different name with a wildcard is a matcher of its own, however the patterns hold them:
  // pairs of them in anchored patterns, up to the bound, and one more alone.
  const pairs = Array.from({ length: MAX_WILD_SEGMENTS / 2 }, (_, k) => `*${2 * k}/*${2 * k + 1}`);
  NamePatterns.parse([...pairs, ...pairs, "*0", "*.tmp/*1"].slice(0, MAX_PATTERNS));
  throwsPattern(() => NamePatterns.parse([...pairs, `*${MAX_WILD_SEGMENTS}`]), "too varied");
});

Deno.test("pathological patterns finish: no exponential backtracking", () => {
  // With a RegExp or naive recursion, each of these takes longer than the test suite.
  const name = "a".repeat(255);
  const set = NamePatterns.parse([
    "*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b",
    "?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*b",
    `${"*a".repeat(500)}b`,
  ]);
  assert.equal(set.excludes(name, false), false);
  assert.equal(set.excludes(`x/${name}`, false), false);
  // And at the level of segments: ** runs against a deep path of near misses.
  const deep = Array.from({ length: 200 }, () => "a").join("/");
  const paths = NamePatterns.parse([`${"**/a/".repeat(100)}b`, `/${"**/*a*a*a*a*/".repeat(50)}b`]);
  assert.equal(paths.excludes(deep, false), false);
  assert(paths.excludes(`${deep}/b`, false));
  // As many of the worst patterns as the limits allow, against one long name: still done.
  const worst = NamePatterns.parse(
    Array.from({ length: 32 }, () => `${"*a".repeat(500)}b`.slice(0, MAX_PATTERN_BYTES - 1)),
  );
  assert.equal(worst.excludes(name, false), false);
});

/**
 * The matcher before anchored patterns were matched along the path (the reference the new one is
 * checked against): each anchored pattern matched against the whole path by the iterative match
 * over segments with one backtrack point, `**` taking any number of segments. A segment's own
 * pattern is matched by the library's name match (an unanchored pattern of that one segment).
 */
function oracle(patterns: readonly string[]): (path: string, isDir: boolean) => boolean {
  const names = new Map<string, NamePatterns>();
  const nameMatch = (segment: string, name: string) => {
    let set = names.get(segment);
    if (!set) names.set(segment, set = NamePatterns.parse([segment]));
    return set.excludes(name, false);
  };
  const parsed = patterns.map((source) => {
    let text = source;
    const dirOnly = text.endsWith("/");
    if (dirOnly) text = text.slice(0, -1);
    const anchored = text.includes("/");
    if (text.startsWith("/")) text = text.slice(1);
    const segments: (string | null)[] = text.split("/").map((s) => s === "**" ? null : s);
    const merged = segments.filter((s, i) => !(s === null && segments[i - 1] === null));
    if (merged.at(-1) === null) merged.splice(-1, 0, "*");
    return { source, dirOnly, anchored, segments: merged };
  });
  return (path, isDir) =>
    parsed.some(({ source, dirOnly, anchored, segments }) => {
      if (dirOnly && !isDir) return false;
      if (!anchored) {
        return nameMatch(source.replace(/\/$/, ""), path.slice(path.lastIndexOf("/") + 1));
      }
      const parts = path.split("/");
      let s = 0;
      let p = 0;
      let starS = -1;
      let starP = 0;
      while (p < parts.length) {
        const segment = segments[s];
        if (segment === null) {
          starS = s++;
          starP = p;
        } else if (segment !== undefined && nameMatch(segment, parts[p])) {
          s++;
          p++;
        } else if (starS >= 0) {
          s = starS + 1;
          p = ++starP;
        } else return false;
      }
      while (segments[s] === null) {
        s++;
      }
      return s === segments.length;
    });
}

/** A deterministic generator of numbers in [0, 1) (mulberry32), so a failure can be replayed. */
function seeded(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

Deno.test("** against a deep path costs the patterns' size a level, whatever the depth", () => {
  // 32 patterns of 500 literal segments after a "**", against each folder of a chain 2,000
  // deep and a file in each: matched anew against the whole path (the matcher before), each
  // call cost up to 32 × 500 × depth segment matches, about 90 s for these 4,000 calls; along
  // the path, each costs one step of at most 32 × 500 states.
  const patterns = Array.from({ length: 32 }, (_, k) => `**/${"a/".repeat(500)}x${k}`);
  const set = NamePatterns.parse(patterns);
  const chain = (depth: number) => Array.from({ length: depth }, () => "a").join("/");
  // A file x<k> is excluded at depth 500 or more, and only by its own pattern's number.
  const expected = (depth: number, k: number) => depth >= 500 && k < 32;
  for (let depth = 1; depth <= 2000; depth++) {
    const folder = chain(depth);
    assert.equal(set.excludes(folder, true), false, `depth ${depth}`);
    assert.equal(set.excludes(`${folder}/x${depth % 40}`, false), expected(depth, depth % 40));
  }
  // Out of order, as a hostile manifest or a look-ahead might ask: still right.
  const random = seeded(7);
  for (let i = 0; i < 200; i++) {
    const depth = 1 + Math.floor(random() * 2000);
    const k = Math.floor(random() * 40);
    assert.equal(set.excludes(`${chain(depth)}/x${k}`, false), expected(depth, k));
    assert.equal(set.excludes(chain(depth), true), false);
  }
  // Other branches share only a prefix with the chain: worked out from there.
  for (const depth of [499, 500, 1999]) {
    assert.equal(set.excludes(`b/${chain(depth)}/x3`, false), depth >= 500);
    assert.equal(set.excludes(`${chain(depth)}/b/x3`, false), false);
    assert.equal(set.excludes(`${chain(depth)}/b/${chain(500)}/x3`, false), true);
  }
});

Deno.test("matching along the path gives the whole-path match's answers, in any order", () => {
  const random = seeded(2026);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
  const segmentTexts = ["a", "b", "ab", "*", "?", "a*", "*b", "[ab]", "[!a]*", "**", "**", "x**"];
  const names = ["a", "b", "ab", "ba", "bb", "c"];
  const pattern = () => {
    const count = 1 + Math.floor(random() * 5);
    let text = Array.from({ length: count }, () => pick(segmentTexts)).join("/");
    if (random() < 0.3) text = `/${text}`;
    if (random() < 0.25) text += "/";
    return text;
  };
  /** Every path of a random tree, in walk order (a folder before what it holds). */
  const walk = (prefix: string, depth: number, out: { path: string; isDir: boolean }[]) => {
    const count = depth === 0 ? 0 : 1 + Math.floor(random() * 3);
    const used = new Set<string>();
    for (let i = 0; i < count; i++) {
      const name = pick(names);
      if (used.has(name)) continue;
      used.add(name);
      const path = prefix === "" ? name : `${prefix}/${name}`;
      const isDir = random() < 0.6;
      out.push({ path, isDir });
      if (isDir) walk(path, depth - 1, out);
    }
    return out;
  };
  let compared = 0;
  let matched = 0;
  for (let round = 0; round < 150; round++) {
    const patterns = Array.from({ length: 1 + Math.floor(random() * 6) }, pattern);
    const set = NamePatterns.parse(patterns);
    const expected = oracle(patterns);
    const paths = walk("", 6 + Math.floor(random() * 4), []);
    // In walk order, then shuffled, then two walks interleaved (a sender and its look-ahead).
    const shuffled = paths.map((p) => ({ p, key: random() })).sort((x, y) => x.key - y.key);
    const ahead = paths.slice(Math.floor(paths.length / 3));
    const interleaved = paths.flatMap((p, i) => ahead[i] ? [p, ahead[i]] : [p]);
    for (const { path, isDir } of [...paths, ...shuffled.map((s) => s.p), ...interleaved]) {
      const answer = set.excludes(path, isDir);
      assert.equal(answer, expected(path, isDir), `${JSON.stringify(patterns)} ${path} ${isDir}`);
      compared++;
      if (answer) matched++;
    }
  }
  // Enough of both answers that a matcher always saying one of them fails.
  assert(matched > compared / 10 && matched < (compared * 9) / 10, `${matched} of ${compared}`);
});

Deno.test("a name's match gives a regular expression's answers, long patterns included", () => {
  // Each piece of a pattern with the regular expression it means (fine here: no hostile input).
  // Each piece with the regular expression it means (fine here: no hostile input) and a
  // character it takes ("" for a star), so that some names match.
  const pieces: [string, string, string][] = [
    ["a", "a", "a"],
    ["b", "b", "b"],
    ["é", "é", "é"],
    ["😀", "😀", "😀"],
    ["*", "[^]*", ""],
    ["?", ".", "😀"],
    ["[ab]", "[ab]", "b"],
    ["[!a]", "[^a]", "é"],
    ["[a-c]", "[a-c]", "c"],
    ["[^é😀]", "[^é😀]", "?"],
    ["\\*", "\\*", "*"],
    ["\\?", "\\?", "?"],
  ];
  const characters = ["a", "b", "c", "é", "😀", "*", "?"];
  const random = seeded(255);
  const any = () => characters[Math.floor(random() * characters.length)];
  let matched = 0;
  let compared = 0;
  for (let round = 0; round < 400; round++) {
    // Some past 31 tokens, so the states take more than one word.
    const count = 1 + Math.floor(random() * (round % 4 === 0 ? 80 : 8));
    const chosen = Array.from({ length: count }, () => pieces[Math.floor(random() * 12)]);
    const glob = chosen.map(([piece]) => piece).join("");
    const set = NamePatterns.parse([glob]);
    const expected = new RegExp(`^${chosen.map(([, meaning]) => meaning).join("")}$`, "su");
    for (let n = 0; n < 30; n++) {
      let name: string;
      if (n % 2 === 0) {
        // One the pattern takes, a character changed now and then.
        const taken = chosen.map(([, , c]) => c === "" ? Array.from({ length: n % 3 }, any) : [c]);
        const characters = taken.flat();
        if (characters.length > 0 && n % 4 === 0) {
          characters[Math.floor(random() * characters.length)] = any();
        }
        name = characters.join("");
      } else {
        name = Array.from({ length: Math.floor(random() * (n % 5 === 1 ? 120 : 12)) }, any).join(
          "",
        );
      }
      const answer = set.excludes(name, false);
      assert.equal(answer, expected.test(name), `${JSON.stringify(glob)} ${JSON.stringify(name)}`);
      compared++;
      if (answer) matched++;
    }
  }
  assert(matched > compared / 20 && matched < (compared * 19) / 20, `${matched} of ${compared}`);
});

Deno.test("the worst names for backtracking cost a word per 32 tokens a character", () => {
  // 1,000 patterns that a backtracking match tries at each of a long name's characters: it took
  // about 40 ms an entry (some 11 s for these 300); bit-parallel, a word a character.
  const patterns = Array.from({ length: MAX_PATTERNS }, (_, k) => `*${"a".repeat(27)}b${k}`);
  const set = NamePatterns.parse(patterns);
  for (let i = 0; i < 300; i++) {
    const name = `${"a".repeat(250 - (i % 7))}${i % 3 === 0 ? `b${i}` : ""}`;
    assert.equal(set.excludes(`x/${name}`, false), i % 3 === 0, name);
  }
});

Deno.test("paths deeper than the states kept (2,048 levels) are still matched right", () => {
  const patterns = ["**/b/*/x", "/a/**/c", "**/a/b/", "a/*/a"];
  const set = NamePatterns.parse(patterns);
  const expected = oracle(patterns);
  const random = seeded(4096);
  const parts: string[] = [];
  for (let depth = 1; depth <= 2300; depth++) {
    parts.push(random() < 0.9 ? "a" : "b");
    const folder = parts.join("/");
    const entries: [string, boolean][] = [
      [folder, true],
      [`${folder}/x`, false],
      [`${folder}/c`, false],
    ];
    for (const [path, isDir] of entries) {
      const answer = set.excludes(path, isDir);
      // The reference costs the path's depth: asked near the cap and now and then.
      if (depth % 50 === 0 || (depth > 2040 && depth < 2060)) {
        assert.equal(answer, expected(path, isDir), `depth ${depth}`);
      }
    }
  }
  // Out of order past the cap: from the deepest level kept.
  for (let i = 0; i < 20; i++) {
    const path = [...parts.slice(0, 2049 + Math.floor(random() * 250)), "b", "q", "x"].join("/");
    assert.equal(set.excludes(path, false), true);
  }
});
