/**
 * Unit tests for command-line parsing of both programs, and for the size and byte formats the
 * CLIs print and accept.
 *
 * @module
 */

import assert from "node:assert/strict";
import { parseClientArgs } from "../lib/client_cli.ts";
import { UsageError } from "../lib/errors.ts";
import { formatBytes, parseSize } from "../lib/format.ts";
import { ProgressLine } from "../lib/progress.ts";
import { RateLimiter } from "../lib/rate_limit.ts";
import { DEFAULT_PORT, DEFAULT_ROOT, parseServerArgs } from "../lib/server_cli.ts";

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
    [["h", "1", "list", "x"], /expected list/],
    [["h", "1", "put", "-"], /stdin needs a REMOTE/],
    [["h", "1", "get", "x", "--overwrite"], /--overwrite applies to put, mput/],
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

Deno.test("rate limiter chunks are a fraction of a second's worth, within bounds", () => {
  assert.equal(new RateLimiter(8 * 2 ** 20).chunkSize, 2 ** 20);
  assert.equal(new RateLimiter(1000).chunkSize, 16384);
  assert.equal(new RateLimiter(2 ** 40).chunkSize, 33554432);
});
