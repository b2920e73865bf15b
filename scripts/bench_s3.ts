/**
 * The S3 rows of `deno task bench`, also runnable alone as `deno task bench:s3`: one file put and
 * got through a ferry server serving a bucket of the radosgw that `scripts/ceph.sh up` runs, side
 * by side with `rclone copyto` straight to the same radosgw (issue 18's target: ferry at least
 * 0.8× rclone), with the ferry server's peak RSS. Skipped, with a note, when no store answers or
 * rclone is missing. Every object it writes is removed at the end.
 *
 * Usage: `deno task bench:s3 [--size 1G] [--runs 1]`.
 *
 * @module
 */

import { median } from "./bench_stats.ts";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { AwsClient } from "aws4fetch";
import { findS3Store, type S3Store } from "./s3_env.ts";

const REPO = fileURLToPath(new URL("..", import.meta.url));
/** Options for {@link benchS3}. */
export interface S3BenchOptions {
  /** Bytes in the file (default 1 GiB). */
  size?: number;
  /** Runs of each case; medians are reported (default 1). */
  runs?: number;
  /** Where progress lines go (default stderr). */
  say?: (line: string) => void;
}

async function hasRclone(): Promise<boolean> {
  try {
    return (await new Deno.Command("rclone", { args: ["version"], stdout: "null" }).output())
      .success;
  } catch {
    return false;
  }
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  using file = await Deno.open(path);
  const buffer = new Uint8Array(1 << 20);
  while (true) {
    const n = await file.read(buffer);
    if (n === null) break;
    hash.update(buffer.subarray(0, n));
  }
  return hash.digest("hex");
}

async function writeRandomFile(path: string, size: number): Promise<void> {
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  const block = new Uint8Array(1 << 20);
  for (let i = 0; i < block.length; i += 65536) {
    crypto.getRandomValues(block.subarray(i, i + 65536));
  }
  for (let done = 0; done < size;) {
    const piece = block.subarray(0, Math.min(block.length, size - done));
    // A counter in every MiB, so no two blocks are alike.
    new DataView(piece.buffer).setUint32(0, done / block.length);
    let written = 0;
    while (written < piece.length) written += await file.write(piece.subarray(written));
    done += piece.length;
  }
}

/** Runs a program to completion; throws with its stderr if it fails. Resolves with seconds. */
async function timedRun(command: string, args: string[], env: Record<string, string>) {
  const started = performance.now();
  const output = await new Deno.Command(command, {
    args,
    cwd: REPO,
    env,
    stdout: "null",
    stderr: "piped",
  }).output();
  const seconds = (performance.now() - started) / 1000;
  if (!output.success) {
    throw new Error(`${command} failed: ${new TextDecoder().decode(output.stderr).trim()}`);
  }
  return seconds;
}

/** Starts a ferry server on the bucket; resolves with its port and a way to read its peak RSS. */
async function startFerry(store: S3Store, bucket: string, env: Record<string, string>) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "server.ts",
      "0",
      "--store",
      `s3://${bucket}/ferry`,
      "--s3-endpoint",
      store.endpoint,
    ],
    cwd: REPO,
    env,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  const deadline = Date.now() + 30_000;
  let port = 0;
  while (Date.now() < deadline) {
    const { value, done } = await reader.read();
    if (done) break;
    seen += value;
    const match = / on 127\.0\.0\.1:(\d+)/.exec(seen);
    if (match) {
      port = Number(match[1]);
      break;
    }
  }
  // Keep reading its log, so it never blocks on a full pipe.
  (async () => {
    while (!(await reader.read()).done) { /* the log is not needed */ }
  })().catch(() => {});
  if (!port) {
    child.kill("SIGKILL");
    throw new Error(`ferry server did not start: ${seen.trim()}`);
  }
  const peakRssMiB = async () => {
    const status = await new Deno.Command("cat", { args: [`/proc/${child.pid}/status`] })
      .output();
    const match = /VmHWM:\s+(\d+) kB/.exec(new TextDecoder().decode(status.stdout));
    return match ? Number(match[1]) / 1024 : undefined;
  };
  const stop = async () => {
    child.kill("SIGTERM");
    await child.status;
  };
  return { port, peakRssMiB, stop };
}

/**
 * Runs the S3 cases and returns their Markdown table, or a one-line note saying why they were
 * skipped.
 */
export async function benchS3(options: S3BenchOptions = {}): Promise<string> {
  const size = options.size ?? 2 ** 30;
  const runs = options.runs ?? 1;
  const say = options.say ?? ((line: string) => console.error(line));
  const store = await findS3Store();
  if (!store) return `S3 rows skipped: no object store answers (start one: scripts/ceph.sh up).`;
  if (!await hasRclone()) {
    return "S3 rows skipped: rclone is not installed (apt-get install rclone).";
  }
  const env: Record<string, string> = {
    AWS_ACCESS_KEY_ID: store.key,
    AWS_SECRET_ACCESS_KEY: store.secret,
    RCLONE_CONFIG_BENCH_TYPE: "s3",
    RCLONE_CONFIG_BENCH_PROVIDER: "Ceph",
    RCLONE_CONFIG_BENCH_ENDPOINT: store.endpoint,
    RCLONE_CONFIG_BENCH_ACCESS_KEY_ID: store.key,
    RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY: store.secret,
    // rclone 1.60 cannot use a CA bundle with its HTTP transport, and plain HTTP needs none.
    AWS_CA_BUNDLE: "",
    NO_COLOR: "1",
  };
  const s3 = new AwsClient({
    accessKeyId: store.key,
    secretAccessKey: store.secret,
    service: "s3",
    region: "us-east-1",
  });
  const bucket = `ferry-bench-${crypto.randomUUID().slice(0, 8)}`;
  await (await s3.fetch(`${store.endpoint}/${bucket}`, { method: "PUT" })).body?.cancel();
  const work = await Deno.makeTempDir({ prefix: "ferry-bench-s3-" });
  const times: Record<string, number[]> = { fput: [], fget: [], rput: [], rget: [] };
  let rss: number | undefined;
  try {
    const source = join(work, "source.bin");
    say(`bench s3: writing a ${size}-byte file`);
    await writeRandomFile(source, size);
    const hash = await sha256File(source);
    const server = await startFerry(store, bucket, env);
    const client = (...args: string[]) => [
      "run",
      "--allow-net",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "client.ts",
      "127.0.0.1",
      String(server.port),
      ...args,
    ];
    const check = async (path: string, what: string) => {
      if (await sha256File(path) !== hash) throw new Error(`${what}: the file came back different`);
      await Deno.remove(path);
    };
    try {
      for (let run = 1; run <= runs; run++) {
        const name = `bench-${run}.bin`;
        const out = join(work, "out.bin");
        times.fput.push(
          await timedRun(Deno.execPath(), client("put", source, name), env),
        );
        times.fget.push(
          await timedRun(Deno.execPath(), client("get", name, out, "--no-fsync"), env),
        );
        await check(out, "ferry get");
        times.rput.push(
          await timedRun("rclone", ["copyto", source, `bench:${bucket}/rc/${name}`], env),
        );
        times.rget.push(
          await timedRun("rclone", ["copyto", `bench:${bucket}/rc/${name}`, out], env),
        );
        await check(out, "rclone copyto");
        say(
          `bench s3: run ${run}: ferry put ${times.fput.at(-1)!.toFixed(1)} s, get ` +
            `${times.fget.at(-1)!.toFixed(1)} s; rclone put ${times.rput.at(-1)!.toFixed(1)} s, ` +
            `get ${times.rget.at(-1)!.toFixed(1)} s`,
        );
      }
      rss = await server.peakRssMiB();
    } finally {
      await server.stop();
    }
  } finally {
    await timedRun("rclone", ["purge", `bench:${bucket}`], env).catch(() => {});
    await Deno.remove(work, { recursive: true });
  }
  const mbps = (seconds: number) => (size / seconds / 1e6).toFixed(0);
  const row = (label: string, seconds: number[], ratio?: number, memory?: number) => {
    const m = median(seconds);
    const target = ratio === undefined
      ? ""
      : `${ratio >= 0.8 ? "pass" : "**miss**"}: ferry ≥ 0.8× rclone`;
    return `| ${label} | ${m.toFixed(1)} | ${mbps(m)} | ${
      ratio === undefined ? "—" : `${ratio.toFixed(2)}×`
    } | ${memory === undefined ? "—" : memory.toFixed(0)} | ${target} |`;
  };
  const putRatio = median(times.rput) / median(times.fput);
  const getRatio = median(times.rget) / median(times.fget);
  return [
    "| S3 case (radosgw, loopback) | Median s | Median MB/s | ferry ÷ this | Peak RSS MiB | Target |",
    "| --- | --: | --: | --: | --: | --- |",
    row("ferry put → radosgw", times.fput, undefined, rss),
    row("rclone copyto put", times.rput, putRatio),
    row("ferry get ← radosgw", times.fget, undefined, rss),
    row("rclone copyto get", times.rget, getRatio),
    "",
    `${size}-byte file, ${runs} run(s), single-node Ceph from scripts/ceph.sh; times are whole ` +
    "client processes; peak RSS is the ferry server's VmHWM over all its transfers.",
  ].join("\n");
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { size: { type: "string" }, runs: { type: "string" } },
  });
  const units: Record<string, number> = { K: 2 ** 10, M: 2 ** 20, G: 2 ** 30 };
  const sizeText = values.size ?? "1G";
  const match = /^(\d+)([KMG]?)$/i.exec(sizeText);
  if (!match) {
    console.error(`bench s3: invalid --size ${sizeText}`);
    Deno.exit(2);
  }
  const size = Number(match[1]) * (units[match[2].toUpperCase()] ?? 1);
  console.log(await benchS3({ size, runs: Number(values.runs ?? 1) }));
}
