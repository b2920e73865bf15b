/**
 * Unit tests for command-line parsing of both programs, for the size and byte formats the CLIs
 * print and accept, for the progress line fitted to explicit widths, for the escaping of names
 * that would drive a terminal, and for the name of a download's `.part` file.
 *
 * @module
 */

import assert from "node:assert/strict";
import { parseClientArgs } from "../lib/client_args.ts";
import { MAX_TIMEOUT_SECONDS } from "../lib/options.ts";
import { UsageError } from "../lib/errors.ts";
import {
  displayName,
  displayUndecodableName,
  escapeUnsafe,
  formatBytes,
  parseSize,
  safeJson,
} from "../lib/format.ts";
import { NAME_MAX, partPathFor } from "../lib/local_download.ts";
import { utf8Length } from "../lib/format.ts";
import { displayWidth, ProgressLine, shorten } from "../lib/progress.ts";
import { RateLimiter } from "../lib/rate_limit.ts";
import { DEFAULT_PORT, DEFAULT_ROOT, parseServerArgs } from "../lib/server_args.ts";

Deno.test("client: options may come before or after positionals", () => {
  const a = parseClientArgs(["--overwrite", "h", "9", "put", "x"]);
  const b = parseClientArgs(["h", "9", "put", "x", "--overwrite"]);
  assert.deepEqual(a, b);
  assert.equal(a.command, "put");
  assert.equal(a.overwrite, true);
  assert.deepEqual(a.args, ["x"]);
});

Deno.test("client: stdin and stdout dashes are arguments, not options", () => {
  assert.deepEqual(parseClientArgs(["h", "1", "put", "-", "r"]).args, ["-", "r"]);
  assert.deepEqual(parseClientArgs(["h", "1", "get", "r", "-"]).args, ["r", "-"]);
  assert.deepEqual(parseClientArgs(["h", "1", "get", "--", "-odd"]).args, ["-odd"]);
});

Deno.test("client: IPv6 hosts and bracketed hosts parse", () => {
  assert.equal(parseClientArgs(["::1", "80", "list"]).host, "::1");
  assert.equal(parseClientArgs(["[::1]", "80", "list"]).host, "[::1]");
});

Deno.test("client: usage errors name what is wrong", () => {
  const cases: [string[], RegExp][] = [
    [[], /Missing HOST/],
    [["h"], /Missing PORT/],
    [["h", "port", "list"], /Invalid port "port"/],
    [["h", "70000", "list"], /Invalid port/],
    [["h", "0", "list"], /Invalid port/],
    [["h", "1", "delete", "x"], /Unknown command "delete"/],
    [["h", "1", "put"], /expected put LOCAL \[REMOTE\]/],
    [["h", "1", "get", "a", "b", "c"], /expected get REMOTE \[LOCAL\]/],
    [["h", "1", "list", "x", "y"], /expected list \[DIR\]/],
    [["h", "1", "mv", "x"], /expected mv OLD NEW/],
    [["h", "1", "rm", "-p", "x"], /--parents applies to mkdir, not rm/],
    [["h", "1", "put", "-"], /stdin needs a REMOTE/],
    [["h", "1", "get", "x", "--overwrite"], /--overwrite applies to put, mput, mv/],
    [["h", "1", "put", "x", "--force"], /--force applies to get, mget/],
    [["h", "1", "list", "--resume"], /--resume applies to put, get, mput, mget/],
    [["h", "1", "put", "-", "r", "--resume"], /--resume needs a local file/],
    [["h", "1", "get", "r", "-", "--resume"], /--resume needs a local file/],
    [["h", "1", "mput"], /expected mput FILE \[FILE \.\.\.\]/],
    [["h", "1", "mget", "a", "-"], /mget takes files/],
    [["h", "1", "get", "r", "--limit-rate", "fast"], /Invalid --limit-rate "fast"/],
    [["h", "1", "put", "x", "--legacy", "--resume"], /--resume is not available with --legacy/],
    [["h", "1", "list", "--legacy", "--tls"], /--legacy cannot be combined with --tls/],
    [["h", "1", "list", "--legacy", "--json"], /--json is not available with --legacy/],
    [["h", "1", "list", "--json", "--long"], /one of --json and --long/],
    [["h", "1", "list", "--bogus"], /Unknown option '--bogus'/],
    [["h", "1", "list", "--timeout", "soon"], /Invalid --timeout/],
    // setTimeout fires at once for more than 2^31-1 ms, so a huge timeout would time out at once.
    [["h", "1", "list", "--timeout", "3000000"], /Invalid --timeout "3000000".*at most 2147483/],
    [["h", "1", "list", "--timeout", "1e9"], /Invalid --timeout "1e9"/],
    [["h", "1", "list", "--timeout", "Infinity"], /Invalid --timeout "Infinity"/],
    [["h", "1", "list", "--timeout", "0"], /Invalid --timeout "0"/],
    [["h", "1", "list", "--timeout=-5"], /Invalid --timeout "-5"/],
    [["h", "1", "list", "--timeout", "NaN"], /Invalid --timeout "NaN"/],
    [["h", "1", "list", "--timeout", ""], /Invalid --timeout ""/],
    [["h", "1", "get", "r", "--stall-timeout", "0"], /Invalid --stall-timeout "0"/],
    [["h", "1", "get", "r", "--stall-timeout", "later"], /Invalid --stall-timeout "later"/],
    [["h", "1", "put", "x", "--legacy", "--stall-timeout", "5"], /not available with --legacy/],
    // Empty names would only fail after connecting, or after a whole download.
    [["h", "1", "put", ""], /^LOCAL is empty$/],
    [["h", "1", "put", "a.bin", ""], /^REMOTE is empty$/],
    [["h", "1", "get", ""], /^REMOTE is empty$/],
    [["h", "1", "get", "a.bin", ""], /^LOCAL is empty$/],
    [["h", "1", "mput", "a.bin", ""], /^FILE is empty$/],
    [["h", "1", "mget", "", "b.bin"], /^NAME is empty$/],
  ];
  for (const [args, pattern] of cases) {
    assert.throws(() => parseClientArgs(args), (e: unknown) => {
      assert.ok(e instanceof UsageError, `UsageError for ${args.join(" ")}`);
      assert.match(e.message, pattern);
      assert.ok(!e.message.endsWith("."), "no trailing period");
      return true;
    });
  }
});

Deno.test("client: --timeout takes seconds up to setTimeout's limit", () => {
  assert.equal(parseClientArgs(["h", "1", "list"]).timeoutMs, 15000);
  assert.equal(parseClientArgs(["h", "1", "list", "--timeout", "0.5"]).timeoutMs, 500);
  assert.equal(MAX_TIMEOUT_SECONDS * 1000, 2 ** 31 - 1 - 647, "whole seconds under 2^31-1 ms");
  const longest = parseClientArgs(["h", "1", "list", "--timeout", String(MAX_TIMEOUT_SECONDS)]);
  assert.equal(longest.timeoutMs, MAX_TIMEOUT_SECONDS * 1000);
  assert.ok(longest.timeoutMs <= 2 ** 31 - 1);
});

Deno.test("client: --stall-timeout is off unless given, and takes seconds", () => {
  assert.equal(parseClientArgs(["h", "1", "list"]).stallTimeoutMs, undefined);
  assert.equal(
    parseClientArgs(["h", "1", "get", "r", "--stall-timeout", "90"]).stallTimeoutMs,
    90000,
  );
  assert.equal(parseClientArgs(["h", "1", "list", "--stall-timeout=0.25"]).stallTimeoutMs, 250);
});

Deno.test("client: help and version need no other arguments", () => {
  assert.equal(parseClientArgs(["--help"]).command, "help");
  assert.equal(parseClientArgs(["-V"]).command, "version");
});

Deno.test("server: bare PORT and --port agree, defaults apply", () => {
  const d = parseServerArgs([]);
  assert.equal(d.port, DEFAULT_PORT);
  assert.equal(d.root, DEFAULT_ROOT);
  assert.equal(d.hostname, "127.0.0.1");
  assert.equal(d.fsync, true);
  assert.equal(parseServerArgs(["8000"]).port, 8000);
  assert.equal(parseServerArgs(["--port", "8000", "8000"]).port, 8000);
  assert.equal(parseServerArgs(["0"]).port, 0);
  const full = parseServerArgs(["--host", "[::1]", "--root", "/srv/x", "--no-fsync"]);
  assert.deepEqual([full.hostname, full.root, full.fsync], ["::1", "/srv/x", false]);
});

Deno.test("server: usage errors", () => {
  assert.throws(() => parseServerArgs(["1", "2"]), /Unexpected argument "2"/);
  assert.throws(() => parseServerArgs(["--port", "1", "2"]), /Two different ports/);
  assert.throws(() => parseServerArgs(["x"]), /Invalid port "x"/);
  assert.throws(() => parseServerArgs(["--root", ""]), /--root is empty/);
  assert.throws(() => parseServerArgs(["--verbose"]), UsageError);
});

Deno.test("server: the connection limits parse, with their defaults", () => {
  const d = parseServerArgs([]);
  assert.deepEqual(
    [d.maxPerAddress, d.handshakeTimeoutMs, d.minRate],
    [32, 5000, 256],
  );
  const given = parseServerArgs([
    "--max-per-address",
    "0",
    "--handshake-timeout",
    "3",
    "--min-rate",
    "1K",
  ]);
  assert.deepEqual([given.maxPerAddress, given.handshakeTimeoutMs, given.minRate], [0, 3000, 1024]);
  assert.throws(() => parseServerArgs(["--handshake-timeout", "0"]), /at least 1/);
  assert.throws(() => parseServerArgs(["--max-per-address", "-1"]), /--max-per-address/);
  assert.throws(() => parseServerArgs(["--min-rate", "fast"]), /Invalid --min-rate "fast"/);
});

Deno.test("sizes parse with binary suffixes and format readably", () => {
  assert.equal(parseSize("1024"), 1024);
  assert.equal(parseSize("10M"), 10 * 2 ** 20);
  assert.equal(parseSize("2G"), 2 * 2 ** 30);
  assert.equal(parseSize("1.5k"), 1536);
  assert.equal(parseSize("8MiB"), 8 * 2 ** 20);
  assert.equal(parseSize("-1"), null);
  assert.equal(parseSize("ten"), null);
  assert.equal(formatBytes(0), "0 B");
  assert.equal(formatBytes(1023), "1023 B");
  assert.equal(formatBytes(1536), "1.50 KiB");
  assert.equal(formatBytes(100 * 2 ** 20), "100.0 MiB");
});

Deno.test("client: transfer options parse for put, get, mput and mget", () => {
  const m = parseClientArgs(["h", "1", "mput", "a", "b", "c", "--resume", "--limit-rate", "8M"]);
  assert.equal(m.command, "mput");
  assert.deepEqual(m.args, ["a", "b", "c"]);
  assert.equal(m.resume, true);
  assert.equal(m.limitRate, 8 * 2 ** 20);
  const g = parseClientArgs(["h", "1", "get", "x", "--json", "--progress", "--ca", "ca.pem"]);
  assert.deepEqual([g.json, g.progress, g.tls, g.caFile], [true, true, true, "ca.pem"]);
  // Downloads are flushed to disk before they get their name unless --no-fsync says otherwise.
  assert.equal(g.fsync, true);
  assert.equal(parseClientArgs(["h", "1", "mget", "a", "--no-fsync"]).fsync, false);
  assert.throws(() => parseClientArgs(["h", "1", "put", "a", "--no-fsync"]), UsageError);
});

Deno.test("progress line shows percentage, bytes, rate and ETA when the size is known", () => {
  const line = new ProgressLine("big.iso", { total: 100 * 2 ** 20, enabled: false });
  line.update(25 * 2 ** 20);
  const text = line.render(performance.now() + 1000);
  assert.match(
    text,
    /^big\.iso {2} 25% {2}25\.0 MiB \/ 100\.0 MiB {2}[\d.]+ MiB\/s {2}ETA \d\d:\d\d$/,
  );
  const streamed = new ProgressLine("stdin", { total: null, enabled: false });
  streamed.update(2048);
  assert.match(streamed.render(), /^stdin {2}2\.00 KiB {2}[\d.]+ [KMG]?i?B\/s$/);
});

Deno.test("rate limiter chunks are an eighth of a second's worth, at least 1 KiB, at most a second's", () => {
  assert.equal(new RateLimiter(8 * 2 ** 20).chunkSize, 2 ** 20);
  assert.equal(new RateLimiter(4096).chunkSize, 1024);
  assert.equal(new RateLimiter(1000).chunkSize, 1000);
  assert.equal(new RateLimiter(1).chunkSize, 1);
  assert.equal(new RateLimiter(2 ** 40).chunkSize, 33554432);
});

Deno.test("rate limiter: the first chunk leaves at once, and an abort ends a wait", async () => {
  const limiter = new RateLimiter(1);
  const started = performance.now();
  await limiter.take(1);
  assert.ok(performance.now() - started < 500, "the first chunk waited");
  const stop = new AbortController();
  const waiting = limiter.take(1, stop.signal);
  const reason = new Error("connection closed");
  stop.abort(reason);
  await assert.rejects(waiting, (error) => error === reason);
});

Deno.test("progress line: 0 columns counts as 80, and a long label gives way to the numbers", () => {
  const label = "a-very-long-file-name-for-testing-the-progress-line-2024-final.iso";
  const line = new ProgressLine(label, { total: 100 * 2 ** 20, enabled: false });
  line.update(25 * 2 ** 20);
  const now = performance.now() + 2000;
  const numbers = / {2} 25% {2}25\.0 MiB \/ 100\.0 MiB {2}[\d.]+ MiB\/s {2}ETA \d\d:\d\d$/;

  // Without a width the line is whole.
  assert.match(line.render(now), new RegExp(`^${label.replaceAll(".", "\\.")}${numbers.source}`));
  // A terminal that reports 0 columns does not know its width: 80 is assumed, nothing is lost.
  const zero = line.render(now, { columns: 0 });
  assert.equal(zero, line.render(now, { columns: 80 }));
  assert.equal(zero.length, 79, "one column is left free so the cursor never wraps");
  assert.match(zero, numbers, `the numbers are whole: ${zero}`);
  assert.match(zero, /^a-very-long-file-n\S*…\S*\.iso /, `the label is shortened: ${zero}`);

  // 40 columns: the label shrinks, then the least useful numbers go; rate and ETA stay whole.
  const narrow = line.render(now, { columns: 40 });
  assert.ok(narrow.length <= 39, narrow);
  assert.match(narrow, /^a-\S*…\S*iso {2} 25% {2}[\d.]+ MiB\/s {2}ETA \d\d:\d\d$/, narrow);
  // Wide enough: nothing changes.
  assert.equal(line.render(now, { columns: 200 }), line.render(now));
  // Narrower and narrower: always within the width, the percentage kept longest.
  for (let columns = 1; columns <= 120; columns++) {
    const text = line.render(now, { columns });
    assert.ok(displayWidth(text) <= Math.max(columns - 1, 0), `${columns}: ${text}`);
    if (columns >= 6) assert.match(text, /25%/, `${columns}: ${text}`);
  }

  // A short label is never shortened; a streamed transfer (no total) fits the same way.
  const short = new ProgressLine("a.iso", { total: 100 * 2 ** 20, enabled: false });
  short.update(25 * 2 ** 20);
  assert.match(short.render(now, { columns: 40 }), /^a\.iso {2} 25% {2}/);
  const streamed = new ProgressLine(label, { total: null, enabled: false });
  streamed.update(2048);
  assert.match(streamed.render(now, { columns: 40 }), /^a-\S*…\S* {2}2\.00 KiB {2}\S+ \S+\/s$/);
});

Deno.test("progress line: widths count terminal columns, and labels cannot hold escapes", () => {
  assert.equal(displayWidth("abc"), 3);
  assert.equal(displayWidth("日本"), 4, "wide characters take two columns");
  assert.equal(displayWidth("e\u0301"), 1, "a combining accent takes none");
  assert.equal(shorten("abcdefghij.iso", 8), "abcde…so", "the start and the end are kept");
  assert.ok(displayWidth(shorten("日本語のファイル名.bin", 9)) <= 9);
  assert.equal(shorten("short", 10), "short");
  const evil = new ProgressLine("x\x1b[31m\u202e.bin", { total: null, enabled: false });
  // deno-lint-ignore no-control-regex -- looking for the escape character is the point
  assert.doesNotMatch(evil.render(), /[\x1b\u202e]/, "escaped, not sent to the terminal");
});

Deno.test("names that would drive a terminal are shown escaped; JSON stays valid JSON", () => {
  assert.equal(displayName("plain name.txt"), "plain name.txt");
  assert.equal(displayName("résumé ü.txt"), "résumé ü.txt", "non-ASCII is not a control");
  // A quoted form always stands for a name: a name that starts with a quote is quoted too.
  assert.equal(displayName('"a.txt"'), String.raw`"\"a.txt\""`);
  assert.equal(displayName('a"b'), 'a"b');
  assert.equal(displayUndecodableName("x\ufffd\n"), String.raw`"x\ufffd\n" (not UTF-8)`);
  const hostile = "a\x1b[2Jb\u009b31m\u202egnp.exe\u2066\nfake line\x7f";
  const shown = displayName(hostile);
  assert.equal(shown, String.raw`"a\u001b[2Jb\u009b31m\u202egnp.exe\u2066\nfake line\u007f"`);
  assert.equal(JSON.parse(shown), hostile, "the escaped form says exactly what the name holds");
  assert.equal(escapeUnsafe("tab\there"), String.raw`tab\u0009here`);
  const json = safeJson([{ name: hostile }], 2);
  // deno-lint-ignore no-control-regex -- looking for control characters is the point
  assert.doesNotMatch(json, /[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/);
  assert.deepEqual(JSON.parse(json), [{ name: hostile }]);
});

Deno.test("a download's .part name fits in 255 bytes, and the same LOCAL always gets the same one", async () => {
  assert.equal(await partPathFor("report.pdf"), "report.pdf.part");
  assert.equal(await partPathFor("dir/sub/report.pdf"), "dir/sub/report.pdf.part");
  const fits = "x".repeat(NAME_MAX - 5);
  assert.equal(await partPathFor(fits), `${fits}.part`, "exactly 255 bytes: unchanged");

  const long = "n".repeat(253);
  const part = await partPathFor(`down/${long}`);
  assert.ok(part.startsWith(`down/${"n".repeat(200)}`), part);
  assert.match(part, /~[0-9a-f]{12}\.part$/);
  assert.ok(utf8Length(part.slice("down/".length)) <= NAME_MAX, part);
  assert.equal(await partPathFor(`down/${long}`), part, "deterministic, so --resume finds it");
  const other = await partPathFor(`down/${"n".repeat(252)}m`);
  assert.notEqual(other, part, "names that differ only at the end get different .part names");

  // Multi-byte names are cut on a character boundary, never inside one.
  const accented = "é".repeat(127); // 254 bytes
  const cut = await partPathFor(accented);
  assert.ok(utf8Length(cut) <= NAME_MAX, cut);
  assert.ok(!cut.includes("\ufffd"));
  assert.match(cut, /^é+~[0-9a-f]{12}\.part$/);
});
