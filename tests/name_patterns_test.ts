/**
 * The `--exclude` matcher (lib/name_patterns.ts): its syntax, what it matches and does not, its
 * limits, and that hostile patterns finish (no RegExp, no exponential backtracking).
 */

import assert from "node:assert/strict";
import {
  MAX_PATTERN_BYTES,
  MAX_PATTERNS,
  MAX_PATTERNS_BYTES,
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
