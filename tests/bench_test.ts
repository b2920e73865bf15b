/**
 * Unit tests for the bench's own logic (`scripts/bench.ts`): its options, and how it turns runs
 * into best and median figures, ratios to ferry and pass/miss targets. The measuring itself needs
 * nc, Python and a quiet machine and runs only under `deno task bench`.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type CaseResult,
  judge,
  median,
  parseOptions,
  parseSize,
  type RunRecord,
  summarize,
  table,
} from "../scripts/bench.ts";

const GIB = 1024 ** 3;

Deno.test("bench options: defaults, sizes with binary suffixes, and refusals", () => {
  const defaults = parseOptions([]);
  assert.deepEqual(defaults, {
    size: GIB,
    runs: 2,
    clients: 50,
    clientSize: 20 * 1024 ** 2,
    files: 200,
    fileSize: 4096,
    json: undefined,
    only: undefined,
    treeFiles: 10_000,
    treeMixed: 500 * 1024 ** 2,
    treeEntries: 100_000,
    help: false,
  });
  assert.deepEqual(parseOptions(["--only", "http-get, nginx-get"]).only, ["http-get", "nginx-get"]);
  // The folder rows (scripts/bench_tree.ts) go by one id, and their sizes by their own options.
  const trees = parseOptions(["--only", "trees", "--tree-files", "1000", "--tree-entries", "5000"]);
  assert.deepEqual([trees.only, trees.treeFiles, trees.treeEntries], [["trees"], 1000, 5000]);
  assert.throws(() => parseOptions(["--tree-entries", "0"]), /--tree-entries "0"/);
  assert.throws(() => parseOptions(["--only", "http-gets"]), /Unknown case "http-gets" in --only/);
  const given = parseOptions(["--size", "256M", "--runs", "5", "--json", "out.json"]);
  assert.equal(given.size, 256 * 1024 ** 2);
  assert.equal(given.runs, 5);
  assert.equal(given.json, "out.json");
  assert.equal(parseSize("1.5GiB"), 1.5 * GIB);
  assert.equal(parseSize("512k"), 512 * 1024);
  assert.equal(parseSize("1000"), 1000);
  assert.throws(() => parseOptions(["--runs", "1"]), /--runs "1": expected a number >= 2/);
  assert.throws(() => parseOptions(["--size", "lots"]), /Invalid size "lots"/);
  assert.throws(() => parseOptions(["--size", "0"]), /at least 1 byte/);
  assert.throws(() => parseOptions(["extra"]), /Unexpected argument extra/);
  assert.throws(() => parseOptions(["--fast"]));
  assert.deepEqual(parseOptions(["--only", "ferry-put-tls,scp-put-aes128-gcm"]).only, [
    "ferry-put-tls",
    "scp-put-aes128-gcm",
  ]);
  assert.throws(() => parseOptions(["--only", "ferry-put,warp"]), /Unknown case "warp" in --only/);
});

Deno.test("median of odd and even counts, whatever the order", () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(median([7]), 7);
});

function single(
  id: string,
  tool: string,
  direction: CaseResult["direction"],
  seconds: number[],
  extra: Partial<RunRecord> = {},
): CaseResult {
  return {
    id,
    label: id,
    direction,
    tool,
    bytes: GIB,
    runs: seconds.map((s, i) => ({ run: i + 1, seconds: s, peakRssKiB: 60 * 1024, ...extra })),
  };
}

function judged(results: CaseResult[]): Map<string, CaseResult> {
  for (const result of results) summarize(result);
  judge(results);
  return new Map(results.map((r) => [r.id, r]));
}

Deno.test("summaries take best and median over the runs that succeeded", () => {
  const result = single("ferry-put", "ferry", "put", [1.0, 0.5, 2.0]);
  result.runs.push({ run: 4, seconds: 0.1, error: "output check failed" });
  summarize(result);
  assert.equal(result.bestSeconds, 0.5, "the failed run's 0.1 s does not count");
  assert.equal(result.medianSeconds, 1.0);
  assert.equal(result.medianGBps, GIB / 1.0 / 1e9);
  assert.equal(result.peakRssMiB, 60);
});

Deno.test("targets: ferry's median speed over each other tool's, in the same direction", () => {
  const results = judged([
    single("ferry-put", "ferry", "put", [1.0, 1.0]),
    single("nc-put", "nc", "put", [1.6, 1.6]),
    single("seed-put", "seed-python", "put", [1.9, 1.9]),
    single("bare-put", "bare-deno", "put", [0.7, 0.8]),
    single("ferry-get", "ferry", "get", [2.0, 2.0]),
    single("nc-get", "nc", "get", [2.9, 2.9]),
  ]);
  const nc = results.get("nc-put")!;
  assert.ok(Math.abs(nc.ferryRatio! - 1.6) < 1e-9);
  assert.deepEqual(nc.target, { text: "ferry ≥ 1.5× nc", pass: true });
  assert.equal(results.get("seed-put")!.target!.pass, false, "1.9× is short of 2× the seed");
  assert.equal(results.get("bare-put")!.target!.pass, true, "0.75× of the bare loop is enough");
  // get is judged against ferry get, not ferry put: 1.45× misses.
  assert.ok(Math.abs(results.get("nc-get")!.ferryRatio! - 1.45) < 1e-9);
  assert.equal(results.get("nc-get")!.target!.pass, false);
  assert.deepEqual(results.get("ferry-put")!.target, { text: "server RSS ≤ 300 MiB", pass: true });
});

Deno.test("targets: HTTP servers are judged against ferry's HTTP side, not its protocol", () => {
  const results = judged([
    single("ferry-get", "ferry", "get", [1.0, 1.0]),
    single("http-get", "ferry-http", "get", [2.0, 2.0]),
    single("python-http-get", "python-http", "get", [6.2, 6.2]),
    single("nginx-get", "nginx", "get", [1.0, 1.0]),
  ]);
  assert.ok(Math.abs(results.get("python-http-get")!.ferryRatio! - 3.1) < 1e-9);
  assert.deepEqual(results.get("python-http-get")!.target, {
    text: "ferry ≥ 3× python http.server (over HTTP)",
    pass: true,
  });
  assert.ok(Math.abs(results.get("nginx-get")!.ferryRatio! - 0.5) < 1e-9);
  assert.equal(results.get("nginx-get")!.target, undefined, "nginx's ratio is reported only");
  assert.deepEqual(results.get("http-get")!.target, { text: "server RSS ≤ 300 MiB", pass: true });
});

Deno.test("targets: memory limits, and any failed run makes a miss", () => {
  const results = judged([
    single("ferry-put", "ferry", "put", [1.0, 1.0], { peakRssKiB: 301 * 1024 }),
    single("ferry-put-many", "ferry", "put-many", [3.0, 3.0], { peakRssKiB: 700 * 1024 }),
    single("nc-put", "nc", "put", [3.0, 3.0]),
  ]);
  assert.equal(results.get("ferry-put")!.target!.pass, false, "301 MiB is over 300");
  assert.equal(results.get("ferry-put-many")!.target!.pass, true);
  assert.equal(results.get("nc-put")!.target!.pass, true);

  const failing = single("nc-put", "nc", "put", [3.0, 3.0]);
  failing.runs[1].error = "nc receiver exited with 1";
  const again = judged([single("ferry-put", "ferry", "put", [1.0, 1.0]), failing]);
  assert.equal(again.get("nc-put")!.target!.pass, false, "3× faster, but a run failed");
  const lines = table([...again.values()]).split("\n");
  assert.match(
    lines.find((l) => l.startsWith("| nc-put"))!,
    /\*\*miss\*\*: ferry ≥ 1\.5× nc \(1\/2 runs failed\) \|$/,
  );
  assert.match(
    lines.find((l) => l.startsWith("| ferry-put"))!,
    /\| — \| 60 \| pass: server RSS ≤ 300 MiB \|$/,
  );
});

Deno.test("targets: ferry over TLS against plain ferry, and scp against ferry over TLS", () => {
  const results = judged([
    single("ferry-put", "ferry", "put", [1.0, 1.0]),
    single("ferry-put-tls", "ferry-tls", "put", [1.2, 1.2]),
    single("scp-put-aes128-gcm", "scp-aes128-gcm", "put", [2.5, 2.5]),
    single("scp-put-chacha20", "scp-chacha20", "put", [3.6, 3.6]),
    single("ferry-get", "ferry", "get", [1.0, 1.0]),
    single("ferry-get-tls", "ferry-tls", "get", [1.3, 1.3]),
    single("scp-get-aes128-gcm", "scp-aes128-gcm", "get", [2.5, 2.5]),
  ]);
  assert.ok(Math.abs(results.get("ferry-put-tls")!.ferryRatio! - 1.2) < 1e-9);
  assert.deepEqual(results.get("ferry-put-tls")!.target, {
    text: "within 25% of ferry without TLS",
    pass: true,
  });
  assert.equal(results.get("ferry-get-tls")!.target!.pass, false, "1.3× the time is over 25%");
  // scp is measured against ferry over TLS: 2.5 s / 1.2 s, not 2.5 s / 1.0 s.
  const scp = results.get("scp-put-aes128-gcm")!;
  assert.ok(Math.abs(scp.ferryRatio! - 2.5 / 1.2) < 1e-9);
  assert.deepEqual(scp.target, { text: "ferry TLS ≥ 2× scp aes128-gcm", pass: true });
  assert.ok(Math.abs(results.get("scp-put-chacha20")!.ferryRatio! - 3.6 / 1.2) < 1e-9);
  assert.equal(results.get("scp-put-chacha20")!.target, undefined, "no target of its own");
  assert.equal(results.get("scp-get-aes128-gcm")!.target!.pass, false, "2.5 / 1.3 is short of 2");
  // --only may leave out what a row is judged against: then it has no verdict, not a miss.
  const alone = judged([
    single("ferry-put-tls", "ferry-tls", "put", [1.2, 1.2]),
    single("scp-get-aes128-gcm", "scp-aes128-gcm", "get", [2.5, 2.5]),
  ]);
  assert.equal(alone.get("ferry-put-tls")!.target, undefined);
  assert.equal(alone.get("scp-get-aes128-gcm")!.target, undefined);
});
