/**
 * `deno task bench`: measures ferry against what users would use instead, on loopback, in one
 * run, and prints a Markdown table for docs/performance.md (and writes the numbers as JSON).
 *
 * Cases, each run `--runs` times (best and median reported):
 * - ferry put and get of one `--size` file, file to file, page cache warm, the receiving side
 *   run with `--no-fsync` (as nc and the others do not flush either); each once more with fsync
 *   on, as its own row, and once more over TLS (`--tls`, the client pinning with `--fingerprint`);
 * - the same bytes through scp to a private sshd on loopback (scripts/bench_ssh.ts), once with
 *   aes128-gcm and once with chacha20-poly1305: the encrypted rivals of ferry over TLS (skipped
 *   with a note where sshd is not installed);
 * - the same bytes over HTTP with curl: ferry's `--http` side (put and get), and for get
 *   `python3 -m http.server` and Debian's nginx with `sendfile on` (skipped with a note where curl
 *   or nginx is missing), judged against ferry's HTTP get (docs/http.md, "Speed");
 * - the same bytes through `nc` (netcat-openbsd), through the seed protocol's Python peer
 *   (tests/seed_peer.py) and through a bare Deno loop (scripts/bare_loop.ts, our runtime's
 *   ceiling);
 * - `--clients` ferry clients each uploading a distinct `--client-size` file at once: total wall
 *   time, every stored file checked against its source, and the server's peak RSS;
 * - many small files (issue 6): `--files` files of `--file-size` through one `ferry mput` (one
 *   process, one connection) against the seed-style client run once per file
 *   (tests/seed_peer.py, one process and one connection each) on the seed's server: seconds,
 *   files/s and the ratio, every stored file checked;
 * - when an object store answers (scripts/ceph.sh up) and rclone is installed, the S3 rows of
 *   scripts/bench_s3.ts: put and get through a ferry server on a bucket against `rclone copyto`.
 *
 * Every run first starts its servers and listeners, then runs `sync` (so no case pays for writing
 * back the one before it), then writes and deletes a scratch file a little larger than the run
 * will write (so every case writes into recently used memory; see `settle`), and only then starts
 * the clock and the client. Each round starts one case later than the one before, so no case
 * always takes the same slot.
 * Times are the wall clock of whole client processes (startup included); for nc and the bare
 * loop, from starting the connecting side until both sides have exited. Speeds are GB/s with
 * 1 GB = 1e9 bytes. CPU s is the machine's busy CPU-seconds over the timed part, from /proc/stat:
 * both sides and the kernel's work for them, which wall time hides when they overlap (and which
 * is steadier than wall time on a noisy VM). Peak RSS is VmHWM from /proc/PID/status of the serving side: ferry's or the
 * seed's server; for nc and the bare loop the receiver on put and the sender on get. The targets
 * of issue 4 (and issue 6's "mput at least 5× faster than one seed client per file") are shown as
 * pass/miss, never asserted.
 *
 * Usage: `deno task bench [--size 1G] [--runs 2] [--clients 50] [--client-size 20M]
 * [--files 200] [--file-size 4K] [--only ID,...] [--json FILE]`. Needs `nc` (netcat-openbsd), `python3` (the
 * seed peer, and the memory sampler: Deno reads /proc only under --allow-all) and `cat`;
 * everything stays on 127.0.0.1, and every process and temporary file it makes is gone when it
 * ends, even on Ctrl-C.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { basename, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { benchS3 } from "./bench_s3.ts";
import { runTreeBench, treeTable } from "./bench_tree.ts";
import { median } from "./bench_stats.ts";
import {
  prepareSsh,
  remote,
  scpArgs,
  type ScpCipher,
  sshdArgs,
  type SshSetup,
} from "./bench_ssh.ts";

const REPO = fileURLToPath(new URL("..", import.meta.url));
const HOST = "127.0.0.1";
const DENO = Deno.execPath();
const DENO_RUN = ["run", "--allow-net", "--allow-read", "--allow-write"];
const CHUNK = 32 * 1024 * 1024;
const MIB = 1024 * 1024;
const SAMPLE_MS = 20;
/**
 * Samples VmHWM of process argv[1] every SAMPLE_MS until it is gone, printing each new peak (KiB)
 * on stderr. A separate process because Deno reads /proc only under --allow-all.
 */
const SAMPLER = `
import sys, time
path, peak = "/proc/" + sys.argv[1] + "/status", 0
while True:
    try:
        with open(path) as f:
            status = f.read()
    except OSError:
        break
    for line in status.splitlines():
        if line.startswith("VmHWM:") and int(line.split()[1]) > peak:
            peak = int(line.split()[1])
            print(peak, file=sys.stderr, flush=True)
    time.sleep(${SAMPLE_MS / 1000})
`;
const READY_MS = 30_000;
/** Name of the benchmark file on every server. */
const REMOTE = "bench.bin";

const USAGE = `Usage: deno task bench [options]

Measures ferry put/get against nc, the seed protocol in Python and a bare Deno loop, on
loopback, and prints a Markdown table.

Options:
  --size N          size of the single-transfer file (default 1G; suffixes K, M, G)
  --runs N          runs of every case, at least 2 (default 2)
  --clients N       simultaneous uploads in the many-clients case (default 50)
  --client-size N   size of each of those uploads (default 20M)
  --files N         files in the many-files case: one mput versus one seed client per
                    file (default 200)
  --file-size N     size of each of those files (default 4K)
  --only ID,...     run only these single-file cases (ferry-put, ferry-put-tls,
                    scp-put-aes128-gcm, http-get, nginx-get, ...; see the ids in the
                    JSON), and neither the
                    many-clients nor the many-files case; "trees" runs the folder rows,
                    "s3" the object-store rows
  --tree-files N    files of 4 KiB in the folder rows' nested tree (default 10000)
  --tree-mixed N    size of the folder rows' mixed tree (default 500M)
  --tree-entries N  entries of the tree whose server peak RSS is measured
                    (default 100000)
  --json FILE       where to write the results (default: bench-results.json in a new
                    temporary folder)
  -h, --help        show this help`;

/** Benchmark settings from the command line. */
export interface BenchOptions {
  /** Bytes in the single-transfer file. */
  size: number;
  /** Runs of each case. */
  runs: number;
  /** Simultaneous clients. */
  clients: number;
  /** Bytes per client upload. */
  clientSize: number;
  /** Files in the many-files case. */
  files: number;
  /** Bytes per file in the many-files case. */
  fileSize: number;
  /** Where to write JSON; undefined picks a temporary folder. */
  json?: string;
  /** Run only the single-file cases with these ids (`trees`: the folder rows, `s3`: the object-store rows); undefined runs everything. */
  only?: string[];
  /** Files of the folder rows' nested tree. */
  treeFiles: number;
  /** Bytes of the folder rows' mixed tree. */
  treeMixed: number;
  /** Entries of the tree whose server peak RSS is measured. */
  treeEntries: number;
  /** Show usage. */
  help: boolean;
}

/** Parses a byte count such as `1G`, `20M`, `512K`, `1.5GiB` or `1000`; suffixes are binary. */
export function parseSize(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?$/i.exec(text.trim());
  if (!match) throw new Error(`Invalid size ${JSON.stringify(text)}: expected e.g. 1G, 20M, 512K`);
  const unit = { "": 1, k: 1024, m: MIB, g: 1024 * MIB }[match[2].toLowerCase()]!;
  const bytes = Math.round(Number(match[1]) * unit);
  if (!(bytes >= 1) || !Number.isSafeInteger(bytes)) {
    throw new Error(`Invalid size ${JSON.stringify(text)}: must be at least 1 byte`);
  }
  return bytes;
}

function parseCount(text: string, name: string, min: number): number {
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(n >= min && n <= 10_000)) {
    throw new Error(`Invalid --${name} ${JSON.stringify(text)}: expected a number >= ${min}`);
  }
  return n;
}

function parseEntries(text: string): number {
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1 && n <= 10_000_000)) {
    throw new Error(`Invalid --tree-entries ${JSON.stringify(text)}: expected a number >= 1`);
  }
  return n;
}

/** Parses the bench's arguments; throws on anything it cannot run. */
export function parseOptions(argv: string[]): BenchOptions {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      size: { type: "string", default: "1G" },
      runs: { type: "string", default: "2" },
      clients: { type: "string", default: "50" },
      "client-size": { type: "string", default: "20M" },
      files: { type: "string", default: "200" },
      "file-size": { type: "string", default: "4K" },
      json: { type: "string" },
      only: { type: "string" },
      "tree-files": { type: "string", default: "10000" },
      "tree-mixed": { type: "string", default: "500M" },
      "tree-entries": { type: "string", default: "100000" },
      help: { type: "boolean", short: "h", default: false },
    },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length > 0) throw new Error(`Unexpected argument ${positionals[0]}`);
  const only = values.only?.split(",").map((id) => id.trim()).filter((id) => id !== "");
  const unknown = only?.find((id) =>
    id !== "trees" && id !== "s3" && !CASES.some((spec) => spec.id === id)
  );
  if (unknown !== undefined) {
    throw new Error(
      `Unknown case ${JSON.stringify(unknown)} in --only: expected some of ` +
        CASES.map((spec) => spec.id).join(", "),
    );
  }
  return {
    size: parseSize(values.size),
    runs: parseCount(values.runs, "runs", 2),
    clients: parseCount(values.clients, "clients", 1),
    clientSize: parseSize(values["client-size"]),
    files: parseCount(values.files, "files", 1),
    fileSize: parseSize(values["file-size"]),
    json: values.json,
    only,
    treeFiles: parseCount(values["tree-files"], "tree-files", 1),
    treeMixed: parseSize(values["tree-mixed"]),
    treeEntries: parseEntries(values["tree-entries"]),
    help: values.help,
  };
}

export { median };

function say(line: string): void {
  console.error(line);
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

// ------------------------------------------------------------------------------- processes

/** A child process started by the bench, with its stderr and peak memory. */
interface Proc {
  name: string;
  child: Deno.ChildProcess;
  pid: number;
  exited: boolean;
  /** Settles when the process has exited. */
  status: Promise<Deno.CommandStatus>;
  /** Settles when stderr has been read to its end. */
  drained: Promise<void>;
  /** Highest VmHWM seen, KiB. */
  peakKiB: number;
  /** The process sampling this one's VmHWM, if tracked. */
  sampler?: Proc;
  /** stderr so far (the last MiB). */
  log: string;
  /** Called whenever the log grows or the process exits. */
  watchers: Set<() => void>;
}

/** Every process started and not yet exited, so that nothing outlives the bench. */
const running = new Set<Proc>();

/** Reads a /proc file through `cat` (Deno itself may read /proc only under --allow-all). */
async function readProc(path: string): Promise<string> {
  try {
    const out = await new Deno.Command("cat", {
      args: [path],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).output();
    return out.success ? new TextDecoder().decode(out.stdout) : "";
  } catch {
    return "";
  }
}

/** Reads the process's VmHWM once more, exactly, while it still runs. */
async function sample(proc: Proc): Promise<void> {
  if (proc.exited) return;
  const match = /^VmHWM:\s+(\d+) kB/m.exec(await readProc(`/proc/${proc.pid}/status`));
  if (match) proc.peakKiB = Math.max(proc.peakKiB, Number(match[1]));
}

/** Starts a sampler process that keeps `proc.peakKiB` up to date. */
function track(proc: Proc): void {
  let sampler: Proc;
  try {
    sampler = start(`${proc.name} sampler`, "python3", ["-c", SAMPLER, String(proc.pid)]);
  } catch (error) {
    say(`bench: cannot sample memory of ${proc.name}: ${errorText(error)}`);
    return;
  }
  proc.sampler = sampler;
  sampler.watchers.add(() => {
    for (const kib of sampler.log.match(/\d+/g) ?? []) {
      proc.peakKiB = Math.max(proc.peakKiB, Number(kib));
    }
  });
}

async function drain(proc: Proc): Promise<void> {
  const decoder = new TextDecoder();
  try {
    for await (const chunk of proc.child.stderr) {
      proc.log = (proc.log + decoder.decode(chunk, { stream: true })).slice(-MIB);
      for (const watch of proc.watchers) watch();
    }
  } catch {
    // Killed: nothing more to read.
  }
}

/** Starts a process in the repository; `tracked` samples its peak memory while it runs. */
function start(name: string, command: string, args: string[], tracked = false): Proc {
  const child = new Deno.Command(command, {
    args,
    cwd: REPO,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const proc: Proc = {
    name,
    child,
    pid: child.pid,
    exited: false,
    status: child.status,
    drained: Promise.resolve(),
    peakKiB: 0,
    log: "",
    watchers: new Set(),
  };
  running.add(proc);
  proc.status = child.status.then((status) => {
    proc.exited = true;
    running.delete(proc);
    for (const watch of proc.watchers) watch();
    return status;
  });
  proc.drained = drain(proc);
  if (tracked) track(proc);
  return proc;
}

function signal(proc: Proc, sig: Deno.Signal): void {
  try {
    proc.child.kill(sig);
  } catch {
    // Already gone.
  }
}

function lastLines(proc: Proc): string {
  return proc.log.trim().split("\n").slice(-3).join(" | ") || "(no output)";
}

/** Settles with the process's exit status, killing it if it runs longer than `ms`. */
async function finish(proc: Proc, ms: number): Promise<Deno.CommandStatus> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${proc.name} still running after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([proc.status, timeout]);
  } catch (error) {
    signal(proc, "SIGKILL");
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

/** Waits for a process to exit with status 0; throws with its last words otherwise. */
async function succeed(proc: Proc, ms: number): Promise<void> {
  const status = await finish(proc, ms);
  if (!status.success) {
    await Promise.race([proc.drained, new Promise((r) => setTimeout(r, 1000))]);
    throw new Error(`${proc.name} exited with ${status.code}: ${lastLines(proc)}`);
  }
}

/** Stops a process (TERM, then KILL), reading its peak memory first. */
async function stop(proc: Proc): Promise<void> {
  if (proc.exited) return;
  if (proc.sampler) await sample(proc);
  signal(proc, "SIGTERM");
  let timer: ReturnType<typeof setTimeout> | undefined;
  const grace = new Promise<"late">((r) => timer = setTimeout(() => r("late"), 3000));
  if (await Promise.race([proc.status, grace]) === "late") signal(proc, "SIGKILL");
  clearTimeout(timer);
  await proc.status;
}

/** Stops every process still running, samplers last. */
async function stopAll(): Promise<void> {
  const samplers = [...running].filter((proc) => proc.name.endsWith(" sampler"));
  await Promise.all([...running].filter((proc) => !samplers.includes(proc)).map(stop));
  await Promise.all(samplers.map(stop));
}

/** Waits until a line of the process's stderr matches `pattern`. */
function waitFor(proc: Proc, pattern: RegExp, ms = READY_MS): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      done();
      reject(new Error(`${proc.name} not ready after ${ms} ms: ${lastLines(proc)}`));
    }, ms);
    const check = () => {
      const match = pattern.exec(proc.log);
      if (match) {
        done();
        resolve(match);
      } else if (proc.exited) {
        done();
        reject(new Error(`${proc.name} exited before it was ready: ${lastLines(proc)}`));
      }
    };
    const done = () => {
      clearTimeout(timer);
      proc.watchers.delete(check);
    };
    proc.watchers.add(check);
    check();
  });
}

/** Waits for the `... on 127.0.0.1:PORT` line that every listener here prints; returns PORT. */
async function listeningPort(proc: Proc): Promise<number> {
  const match = await waitFor(proc, / on 127\.0\.0\.1:(\d+)/);
  await firstSample(proc);
  return Number(match[1]);
}

/** Waits for the first memory sample of a process, so that even a short life is measured. */
async function firstSample(proc: Proc): Promise<void> {
  if (proc.sampler) await waitFor(proc.sampler, /\d+\n/, 5000).catch(() => {});
}

/** A port that was free a moment ago, for listeners (nc) that cannot pick their own. */
function freePort(): number {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Waits until something listens on HOST:port, without connecting (nc accepts only once). */
async function waitListening(port: number, proc: Proc, ms = READY_MS): Promise<void> {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  const deadline = performance.now() + ms;
  while (performance.now() < deadline) {
    const table = await readProc("/proc/net/tcp");
    const listening = table.split("\n").some((line) => {
      const fields = line.trim().split(/\s+/);
      return fields[1] === local && fields[3] === "0A";
    });
    if (listening) return await firstSample(proc);
    if (proc.exited) throw new Error(`${proc.name} exited: ${lastLines(proc)}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`${proc.name} not listening on port ${port} after ${ms} ms`);
}

// ------------------------------------------------------------------------------- files

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await file.write(bytes.subarray(offset));
}

/** 32 MiB of random bytes, the material of every generated file. */
function randomBlock(): Uint8Array {
  const block = new Uint8Array(CHUNK);
  for (let i = 0; i < block.length; i += 65536) {
    crypto.getRandomValues(block.subarray(i, i + 65536));
  }
  return block;
}

/**
 * Writes `size` bytes made of `block`, stamped with the file and block numbers so that no two
 * blocks or files are alike; returns the SHA-256 of what was written.
 */
async function generateFile(
  path: string,
  size: number,
  block: Uint8Array,
  fileNumber: number,
): Promise<string> {
  const hash = createHash("sha256");
  const view = new DataView(block.buffer, block.byteOffset, block.byteLength);
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    for (let written = 0, n = 0; written < size; n++) {
      view.setUint32(0, fileNumber, true);
      view.setUint32(4, n, true);
      view.setFloat64(8, written, true);
      const chunk = block.subarray(0, Math.min(block.length, size - written));
      await writeAll(file, chunk);
      hash.update(chunk);
      written += chunk.length;
    }
  } finally {
    file.close();
  }
  return hash.digest("hex");
}

/** Checks that `path` holds `size` bytes with SHA-256 `hash`; returns what is wrong, or null. */
async function verifyFile(path: string, size: number, hash: string): Promise<string | null> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch {
    return `${basename(path)} missing`;
  }
  try {
    const actual = (await file.stat()).size;
    if (actual !== size) return `${basename(path)} has ${actual} bytes, expected ${size}`;
    const digest = createHash("sha256");
    const buffer = new Uint8Array(CHUNK);
    while (true) {
      const n = await file.read(buffer);
      if (n === null) break;
      digest.update(buffer.subarray(0, n));
    }
    return digest.digest("hex") === hash ? null : `${basename(path)} content differs`;
  } finally {
    file.close();
  }
}

/**
 * Whether every file sent (`size` bytes each, with its sha256 `hash`) arrived whole in `root`:
 * null when all did, else how many did and the first few that did not, for the record's error.
 */
async function checkStored(
  root: string,
  files: { path: string; hash: string }[],
  size: number,
): Promise<string | null> {
  const problems: string[] = [];
  for (const file of files) {
    const wrong = await verifyFile(join(root, basename(file.path)), size, file.hash);
    if (wrong) problems.push(wrong);
  }
  if (problems.length === 0) return null;
  const shown = problems.slice(0, 3).join("; ") + (problems.length > 3 ? "; …" : "");
  return `${files.length - problems.length}/${files.length} stored intact (${shown})`;
}

// ------------------------------------------------------------------------------- cases

/** What every case works with. */
interface Bench {
  /** The file to move. */
  source: string;
  size: number;
  /** SHA-256 of the source. */
  hash: string;
  /** Longest any one process of a single transfer may run. */
  timeoutMs: number;
  /** The folder `settle` writes its scratch file in. */
  work: string;
  /** The TLS servers' state folder (their key, made once). */
  tlsState: string;
  /** The private sshd's keys, for the scp cases; absent where they cannot run. */
  ssh?: SshSetup;
}

/** One timed transfer. */
interface Measured extends Timing {
  /** The process whose peak memory is reported. */
  memory: Proc;
  /** Where the moved bytes ended up. */
  output: string;
}

/** A benchmark case: sets up in `dir`, times one transfer. */
interface CaseSpec {
  id: string;
  label: string;
  direction: "put" | "get";
  tool:
    | "ferry"
    | "ferry-fsync"
    | "ferry-tls"
    | "nc"
    | "seed-python"
    | "bare-deno"
    | "scp-aes128-gcm"
    | "scp-chacha20"
    | "ferry-http"
    | "python-http"
    | "nginx";
  measure: (bench: Bench, dir: string) => Promise<Measured>;
  /** Why the case cannot run here (a program missing), checked once at start; null if it can. */
  unavailable?: () => Promise<string | null>;
}

function ferryServer(
  root: string,
  fsync: boolean,
  tlsState?: string,
  extra: string[] = [],
): Proc {
  // Every client here comes from one address; the many-clients case stands for many hosts.
  const args = [
    ...DENO_RUN,
    "server.ts",
    "0",
    "--host",
    HOST,
    "--root",
    root,
    "--max-per-address",
    "0",
  ];
  if (tlsState !== undefined) args.push("--tls", "--state-dir", tlsState);
  args.push(...extra);
  return start("ferry server", DENO, fsync ? args : [...args, "--no-fsync"], true);
}

function ferryClient(port: number, ...args: string[]): Proc {
  return start("ferry client", DENO, [...DENO_RUN, "client.ts", HOST, String(port), ...args]);
}

function seedServer(root: string): Proc {
  const args = ["tests/seed_peer.py", "server", "--port", "0", "--host", HOST, "--root", root];
  return start("seed server", "python3", args, true);
}

function seedClient(port: number, ...args: string[]): Proc {
  return start("seed client", "python3", [
    "tests/seed_peer.py",
    "client",
    HOST,
    String(port),
    ...args,
  ]);
}

function bare(role: "send" | "recv", endpoint: string, path: string, track = false): Proc {
  const [mode, where] = endpoint === "listen" ? ["listen", `${HOST}:0`] : ["connect", endpoint];
  const args = [...DENO_RUN, "scripts/bare_loop.ts", role, mode, where, path];
  return start(`bare ${role}`, DENO, args, track);
}

/** nc through sh, only for the redirection; `exec` makes the pid nc's own. */
function nc(name: string, script: string, args: string[], track = false): Proc {
  return start(name, "sh", ["-c", `exec ${script}`, "sh", ...args], track);
}

/**
 * Puts the machine in the same state right before every timed case (see `timed`):
 * - Flushes dirty pages (the previous case's output) to disk. Without it the kernel wrote a
 *   gigabyte back in the middle of whichever case came next, and that case's time swung by up to
 *   2x depending on its place in the round-robin.
 * - Reads the files the case will send, so they are in the page cache as the table says: this
 *   VM runs DAMON, which pages out file pages left unused for about a minute.
 * - Writes and deletes a scratch file somewhat larger than the case will write, last, so that the
 *   case writes into memory that was in use a moment ago. On a VM that hands free memory back to
 *   its host (virtio-balloon free page reporting, as here), memory free for more than a second or
 *   two is unmapped on the host and the first write to each page faults there. Writing 1 GiB in
 *   C took 0.3 s of system time right after such a delete and 1.0-1.1 s two to three seconds
 *   after it (2.0 s after five), so which case got which depended on what ran before it and on
 *   how long its server took to start.
 */
async function settle(work: string, bytes: number, sources: string[] = []): Promise<void> {
  await new Deno.Command("sync", { stdin: "null", stdout: "null", stderr: "null" }).output()
    .catch(() => {});
  const buffer = new Uint8Array(CHUNK);
  for (const source of sources) {
    using file = await Deno.open(source, { read: true });
    while (await file.read(buffer) !== null) {
      // Reading is the point: it brings the file back into the page cache.
    }
  }
  if (bytes >= 64 * MIB) {
    const scratch = join(work, "scratch.bin");
    buffer.fill(0);
    const file = await Deno.open(scratch, { write: true, create: true, truncate: true });
    try {
      for (let done = 0; done < bytes * 1.2; done += buffer.length) await writeAll(file, buffer);
    } finally {
      file.close();
    }
    // Deleted before writeback, its pages are freed without touching the disk.
    await Deno.remove(scratch);
  }
}

/** How long a timed body took. */
interface Timing {
  /** Wall-clock seconds. */
  seconds: number;
  /** CPU-seconds the whole machine spent meanwhile, every process and the kernel (see busyCpu). */
  cpuSeconds?: number;
}

/**
 * CPU-seconds the machine has been busy since boot, summed over CPUs: user, nice, system, irq
 * and softirq time from /proc/stat (in USER_HZ, 100 a second), without idle, I/O wait and the
 * time the hypervisor stole. Over a transfer this counts both sides and the kernel's copies,
 * which a per-process figure would split or miss; the bench's own sampling adds a little.
 */
async function busyCpu(): Promise<number | undefined> {
  const fields = /^cpu\s+(.*)$/m.exec(await readProc("/proc/stat"))?.[1].split(/\s+/).map(Number);
  if (!fields || fields.length < 7 || fields.some((n) => !Number.isFinite(n))) return undefined;
  const [user, nice, system, , , irq, softirq] = fields;
  return (user + nice + system + irq + softirq) / 100;
}

/** What a case will send and write, for {@link settle}. */
interface Workload {
  /** The folder for the scratch file. */
  work: string;
  /** Bytes the case will write. */
  bytes: number;
  /** Files the case will send. */
  sources: string[];
}

/**
 * Settles the machine for `workload`, then runs `body`, returning its wall-clock seconds and the
 * machine's CPU-seconds meanwhile. Callers start their servers and listeners first, so that no
 * case spends the moments after `settle` starting up: memory freed by `settle` stays warm for
 * only a second or two (see there), and a case whose server took longer to start would write
 * into colder memory than one whose listener is nc.
 */
async function timed(workload: Workload, body: () => Promise<unknown>): Promise<Timing> {
  await settle(workload.work, workload.bytes, workload.sources);
  const cpuBefore = await busyCpu();
  const started = performance.now();
  await body();
  const seconds = (performance.now() - started) / 1000;
  const cpuAfter = await busyCpu();
  const cpuSeconds = cpuBefore === undefined || cpuAfter === undefined
    ? undefined
    : cpuAfter - cpuBefore;
  return { seconds, cpuSeconds };
}

/** The workload of a single-file case. */
function single(bench: Bench): Workload {
  return { work: bench.work, bytes: bench.size, sources: [bench.source] };
}

async function rootWithSource(bench: Bench, dir: string): Promise<string> {
  const root = join(dir, "root");
  await Deno.mkdir(root);
  await Deno.link(bench.source, join(root, REMOTE));
  return root;
}

function ferryPut(fsync: boolean): CaseSpec["measure"] {
  return async (bench, dir) => {
    const root = join(dir, "root");
    const server = ferryServer(root, fsync);
    const port = await listeningPort(server);
    const timing = await timed(
      single(bench),
      () => succeed(ferryClient(port, "put", bench.source, REMOTE), bench.timeoutMs),
    );
    return { ...timing, memory: server, output: join(root, REMOTE) };
  };
}

function ferryGet(fsync: boolean): CaseSpec["measure"] {
  return async (bench, dir) => {
    const server = ferryServer(await rootWithSource(bench, dir), false);
    const port = await listeningPort(server);
    const output = join(dir, "out.bin");
    const flags = fsync ? [] : ["--no-fsync"];
    const timing = await timed(
      single(bench),
      () => succeed(ferryClient(port, "get", REMOTE, output, ...flags), bench.timeoutMs),
    );
    return { ...timing, memory: server, output };
  };
}

/**
 * ferry over TLS with the server's own certificate, the client pinning it with --fingerprint as
 * the server's banner says; without a config folder the client reads the certificate first, as
 * on first use, which adds one TLS handshake (milliseconds) to each run.
 */
function ferryTls(direction: "put" | "get"): CaseSpec["measure"] {
  return async (bench, dir) => {
    const root = direction === "put" ? join(dir, "root") : await rootWithSource(bench, dir);
    const server = ferryServer(root, false, bench.tlsState);
    const port = await listeningPort(server);
    const pin = (await waitFor(server, /TLS certificate (SHA256:\S+)/))[1];
    const output = direction === "put" ? join(root, REMOTE) : join(dir, "out.bin");
    const args = direction === "put"
      ? ["put", bench.source, REMOTE]
      : ["get", REMOTE, output, "--no-fsync"];
    const timing = await timed(
      single(bench),
      () => succeed(ferryClient(port, "--fingerprint", pin, ...args), bench.timeoutMs),
    );
    return { ...timing, memory: server, output };
  };
}

/**
 * scp to or from a private sshd with one cipher. The sshd that listens forks a process per
 * login, so its memory is not the serving side's and is not reported.
 */
function scpCase(direction: "put" | "get", cipher: ScpCipher): CaseSpec["measure"] {
  return async (bench, dir) => {
    const ssh = bench.ssh!;
    const port = freePort();
    const sshd = start("sshd", ssh.sshd, await sshdArgs(ssh, port, cipher));
    await waitListening(port, sshd);
    const output = join(dir, "out.bin");
    const [from, to] = direction === "put"
      ? [bench.source, remote(ssh, output)]
      : [remote(ssh, join(await rootWithSource(bench, dir), REMOTE)), output];
    const timing = await timed(
      single(bench),
      () => succeed(start("scp", "scp", scpArgs(ssh, port, cipher, from, to)), bench.timeoutMs),
    );
    return { ...timing, memory: sshd, output };
  };
}

async function ncPut(bench: Bench, dir: string): Promise<Measured> {
  const port = freePort();
  const output = join(dir, "out.bin");
  const receiver = nc("nc receiver", 'nc -d -l "$1" "$2" > "$3"', [HOST, `${port}`, output], true);
  await waitListening(port, receiver);
  const timing = await timed(single(bench), () => {
    const sender = nc("nc sender", 'nc -N "$1" "$2" < "$3"', [HOST, `${port}`, bench.source]);
    return Promise.all([succeed(sender, bench.timeoutMs), succeed(receiver, bench.timeoutMs)]);
  });
  return { ...timing, memory: receiver, output };
}

async function ncGet(bench: Bench, dir: string): Promise<Measured> {
  const port = freePort();
  const output = join(dir, "out.bin");
  const sender = nc(
    "nc sender",
    'nc -N -l "$1" "$2" < "$3"',
    [HOST, `${port}`, bench.source],
    true,
  );
  await waitListening(port, sender);
  const timing = await timed(single(bench), () => {
    const receiver = nc("nc receiver", 'nc -d "$1" "$2" > "$3"', [HOST, `${port}`, output]);
    return Promise.all([succeed(receiver, bench.timeoutMs), succeed(sender, bench.timeoutMs)]);
  });
  return { ...timing, memory: sender, output };
}

async function seedPut(bench: Bench, dir: string): Promise<Measured> {
  const root = join(dir, "root");
  const server = seedServer(root);
  const port = await listeningPort(server);
  const timing = await timed(
    single(bench),
    () => succeed(seedClient(port, "put", bench.source, REMOTE), bench.timeoutMs),
  );
  return { ...timing, memory: server, output: join(root, REMOTE) };
}

async function seedGet(bench: Bench, dir: string): Promise<Measured> {
  const server = seedServer(await rootWithSource(bench, dir));
  const port = await listeningPort(server);
  const output = join(dir, "out.bin");
  const timing = await timed(
    single(bench),
    () => succeed(seedClient(port, "get", REMOTE, output), bench.timeoutMs),
  );
  return { ...timing, memory: server, output };
}

async function barePut(bench: Bench, dir: string): Promise<Measured> {
  const output = join(dir, "out.bin");
  const receiver = bare("recv", "listen", output, true);
  const port = await listeningPort(receiver);
  const timing = await timed(single(bench), () => {
    const sender = bare("send", `${HOST}:${port}`, bench.source);
    return Promise.all([succeed(sender, bench.timeoutMs), succeed(receiver, bench.timeoutMs)]);
  });
  return { ...timing, memory: receiver, output };
}

async function bareGet(bench: Bench, dir: string): Promise<Measured> {
  const output = join(dir, "out.bin");
  const sender = bare("send", "listen", bench.source, true);
  const port = await listeningPort(sender);
  const timing = await timed(single(bench), () => {
    const receiver = bare("recv", `${HOST}:${port}`, output);
    return Promise.all([succeed(receiver, bench.timeoutMs), succeed(sender, bench.timeoutMs)]);
  });
  return { ...timing, memory: sender, output };
}

/** curl, quiet but for errors, failing on an HTTP error status. */
function curl(...args: string[]): Proc {
  return start("curl", "curl", ["-sS", "-f", ...args]);
}

/** ferry-server with `--http` on a free port; resolves with the base URL once it listens. */
async function ferryHttpServer(root: string): Promise<{ server: Proc; url: string }> {
  const server = ferryServer(root, false, undefined, ["--http", `${HOST}:0`]);
  const match = await waitFor(server, /HTTP on (http:\/\/\S+\/)/);
  await firstSample(server);
  return { server, url: match[1] };
}

function httpPut(): CaseSpec["measure"] {
  return async (bench, dir) => {
    const root = join(dir, "root");
    const { server, url } = await ferryHttpServer(root);
    const timing = await timed(
      single(bench),
      () => succeed(curl("-o", "/dev/null", "-T", bench.source, url + REMOTE), bench.timeoutMs),
    );
    return { ...timing, memory: server, output: join(root, REMOTE) };
  };
}

/** A GET of the benchmark file with curl from a server that `serve` starts on `root`. */
function httpGet(
  serve: (root: string, dir: string) => Promise<{ server: Proc; url: string }>,
): CaseSpec["measure"] {
  return async (bench, dir) => {
    const { server, url } = await serve(await rootWithSource(bench, dir), dir);
    const output = join(dir, "out.bin");
    const timing = await timed(
      single(bench),
      () => succeed(curl("-o", output, url + REMOTE), bench.timeoutMs),
    );
    return { ...timing, memory: server, output };
  };
}

async function pythonHttpServer(root: string): Promise<{ server: Proc; url: string }> {
  const port = freePort();
  const args = ["-m", "http.server", String(port), "--bind", HOST, "--directory", root];
  const server = start("python http.server", "python3", args, true);
  await waitListening(port, server);
  return { server, url: `http://${HOST}:${port}/` };
}

/** Debian's nginx with `sendfile on`, a config of its own in `dir`, in the foreground. */
async function nginxServer(root: string, dir: string): Promise<{ server: Proc; url: string }> {
  const port = freePort();
  const prefix = join(dir, "nginx");
  await Deno.mkdir(join(prefix, "tmp"), { recursive: true });
  const temp = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
    .map((what) => `${what}_temp_path ${prefix}/tmp/${what};`).join(" ");
  // As root, workers would otherwise run as nobody, who may not read the bench's private folder.
  const id = await new Deno.Command("id", { args: ["-u"], stdin: "null", stderr: "null" }).output();
  const user = new TextDecoder().decode(id.stdout).trim() === "0" ? "user root;" : "";
  await Deno.writeTextFile(
    join(prefix, "nginx.conf"),
    `daemon off; worker_processes 1; pid ${prefix}/nginx.pid; error_log ${prefix}/error.log; ${user}
events { worker_connections 64; }
http { access_log off; sendfile on; tcp_nopush on; ${temp}
  types { application/octet-stream bin; }
  server { listen ${HOST}:${port}; root ${root}; } }
`,
  );
  const server = start("nginx", "nginx", [
    "-p",
    prefix,
    "-c",
    join(prefix, "nginx.conf"),
    "-e",
    join(prefix, "error.log"),
  ], true);
  await waitListening(port, server);
  return { server, url: `http://${HOST}:${port}/` };
}

/** Null when `program args` runs, else a note saying it is missing. */
async function missing(program: string, args: string[], note: string): Promise<string | null> {
  try {
    const out = await new Deno.Command(program, {
      args,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    })
      .output();
    return out.success ? null : note;
  } catch {
    return note;
  }
}

const needCurl = () => missing("curl", ["--version"], "curl is not installed");

const CASES: CaseSpec[] = [
  {
    id: "ferry-put",
    label: "ferry put",
    direction: "put",
    tool: "ferry",
    measure: ferryPut(false),
  },
  {
    id: "ferry-put-fsync",
    label: "ferry put, fsync on",
    direction: "put",
    tool: "ferry-fsync",
    measure: ferryPut(true),
  },
  {
    id: "ferry-put-tls",
    label: "ferry put, TLS",
    direction: "put",
    tool: "ferry-tls",
    measure: ferryTls("put"),
  },
  {
    id: "scp-put-aes128-gcm",
    label: "scp put, aes128-gcm",
    direction: "put",
    tool: "scp-aes128-gcm",
    measure: scpCase("put", "aes128-gcm@openssh.com"),
  },
  {
    id: "scp-put-chacha20",
    label: "scp put, chacha20-poly1305",
    direction: "put",
    tool: "scp-chacha20",
    measure: scpCase("put", "chacha20-poly1305@openssh.com"),
  },
  { id: "nc-put", label: "nc put", direction: "put", tool: "nc", measure: ncPut },
  {
    id: "seed-put",
    label: "seed protocol, Python, put",
    direction: "put",
    tool: "seed-python",
    measure: seedPut,
  },
  {
    id: "bare-put",
    label: "bare Deno loop, put",
    direction: "put",
    tool: "bare-deno",
    measure: barePut,
  },
  {
    id: "ferry-get",
    label: "ferry get",
    direction: "get",
    tool: "ferry",
    measure: ferryGet(false),
  },
  {
    id: "ferry-get-fsync",
    label: "ferry get, fsync on",
    direction: "get",
    tool: "ferry-fsync",
    measure: ferryGet(true),
  },
  {
    id: "ferry-get-tls",
    label: "ferry get, TLS",
    direction: "get",
    tool: "ferry-tls",
    measure: ferryTls("get"),
  },
  {
    id: "scp-get-aes128-gcm",
    label: "scp get, aes128-gcm",
    direction: "get",
    tool: "scp-aes128-gcm",
    measure: scpCase("get", "aes128-gcm@openssh.com"),
  },
  {
    id: "scp-get-chacha20",
    label: "scp get, chacha20-poly1305",
    direction: "get",
    tool: "scp-chacha20",
    measure: scpCase("get", "chacha20-poly1305@openssh.com"),
  },
  { id: "nc-get", label: "nc get", direction: "get", tool: "nc", measure: ncGet },
  {
    id: "seed-get",
    label: "seed protocol, Python, get",
    direction: "get",
    tool: "seed-python",
    measure: seedGet,
  },
  {
    id: "bare-get",
    label: "bare Deno loop, get",
    direction: "get",
    tool: "bare-deno",
    measure: bareGet,
  },
  {
    id: "http-put",
    label: "ferry HTTP, curl -T (put)",
    direction: "put",
    tool: "ferry-http",
    measure: httpPut(),
    unavailable: needCurl,
  },
  {
    id: "http-get",
    label: "ferry HTTP, curl (get)",
    direction: "get",
    tool: "ferry-http",
    measure: httpGet((root) => ferryHttpServer(root)),
    unavailable: needCurl,
  },
  {
    id: "python-http-get",
    label: "python3 -m http.server, curl (get)",
    direction: "get",
    tool: "python-http",
    measure: httpGet((root) => pythonHttpServer(root)),
    unavailable: needCurl,
  },
  {
    id: "nginx-get",
    label: "nginx, sendfile on, curl (get)",
    direction: "get",
    tool: "nginx",
    measure: httpGet(nginxServer),
    unavailable: async () =>
      await needCurl() ??
        await missing("nginx", ["-v"], "nginx is not installed (apt-get install nginx)"),
  },
];

// ------------------------------------------------------------------------------- results

/** One run of one case. */
export interface RunRecord {
  run: number;
  seconds?: number;
  gbps?: number;
  /** The machine's CPU-seconds during the timed part (see busyCpu). */
  cpuSeconds?: number;
  peakRssKiB?: number;
  /** Many-files cases: files stored per second. */
  filesPerSecond?: number;
  error?: string;
}

/** A target of issue 4 (or 6) and whether this run met it. */
export interface Target {
  text: string;
  pass: boolean;
}

/** Everything measured about one case. */
export interface CaseResult {
  id: string;
  label: string;
  direction: "put" | "get" | "put-many" | "put-files";
  tool: string;
  bytes: number;
  /** Many-files cases: how many files make up `bytes`. */
  files?: number;
  runs: RunRecord[];
  bestSeconds?: number;
  medianSeconds?: number;
  bestGBps?: number;
  medianGBps?: number;
  /** Median of the machine's CPU-seconds per run. */
  medianCpuSeconds?: number;
  peakRssMiB?: number;
  /** ferry's median GB/s over this case's, in the same direction. */
  ferryRatio?: number;
  target?: Target;
  /** Many-clients case: files stored intact out of those sent, per run. */
  intact?: string[];
  /** Many-files cases: files per second at the best and median times. */
  bestFilesPerSecond?: number;
  medianFilesPerSecond?: number;
}

/** Fills in a case's best and median figures from its runs; runs that failed do not count. */
export function summarize(result: CaseResult): void {
  const good = result.runs.filter((r) => r.seconds !== undefined && r.error === undefined);
  const seconds = good.map((r) => r.seconds!);
  const peaks = result.runs.map((r) => r.peakRssKiB ?? 0).filter((k) => k > 0);
  if (peaks.length > 0) result.peakRssMiB = Math.max(...peaks) / 1024;
  if (seconds.length === 0) return;
  result.bestSeconds = Math.min(...seconds);
  result.medianSeconds = median(seconds);
  result.bestGBps = result.bytes / result.bestSeconds / 1e9;
  result.medianGBps = result.bytes / result.medianSeconds / 1e9;
  const cpu = good.map((r) => r.cpuSeconds).filter((c) => c !== undefined);
  if (cpu.length > 0) result.medianCpuSeconds = median(cpu);
  if (result.files !== undefined) {
    result.bestFilesPerSecond = result.files / result.bestSeconds;
    result.medianFilesPerSecond = result.files / result.medianSeconds;
  }
}

/** Sets every case's ratio to ferry and its target (issue 4's, and issue 6's many-files one), on medians. */
export function judge(results: CaseResult[]): void {
  const ferry = (direction: string) =>
    results.find((r) => r.tool === "ferry" && r.direction === direction)?.medianGBps;
  const rss = (r: CaseResult, limit: number): Target => ({
    text: `server RSS ≤ ${limit} MiB`,
    pass: r.peakRssMiB !== undefined && r.peakRssMiB <= limit,
  });
  for (const r of results) {
    // HTTP servers are compared with ferry's HTTP side; everything else with ferry's protocol.
    const viaHttp = r.tool === "python-http" || r.tool === "nginx";
    const ours = viaHttp
      ? results.find((x) => x.tool === "ferry-http" && x.direction === r.direction)?.medianGBps
      : ferry(r.direction);
    if (r.tool !== "ferry" && ours !== undefined && r.medianGBps !== undefined) {
      r.ferryRatio = ours / r.medianGBps;
    }
    const versus = (factor: number, what: string): Target => ({
      text: `ferry ≥ ${factor}× ${what}`,
      pass: r.ferryRatio !== undefined && r.ferryRatio >= factor,
    });
    if (r.direction === "put-files") {
      // Same bytes both ways, so the ratio of speeds is the ratio of times.
      r.target = r.tool === "ferry"
        ? { text: `all ${r.files} intact`, pass: r.runs.length > 0 }
        : { text: "mput ≥ 5× one seed client per file", pass: (r.ferryRatio ?? 0) >= 5 };
    } else if (r.direction === "put-many") {
      const allIntact = r.runs.length > 0 && r.runs.every((run) => run.error === undefined);
      r.target = { text: "all intact, server RSS ≤ 768 MiB", pass: allIntact && rss(r, 768).pass };
    } else if (r.tool === "ferry" || r.tool === "ferry-fsync" || r.tool === "ferry-http") {
      r.target = rss(r, 300);
    } else if (r.tool === "nc") r.target = versus(1.5, "nc");
    else if (r.tool === "seed-python") r.target = versus(2, "seed");
    else if (r.tool === "bare-deno") r.target = versus(0.75, "bare loop");
    else if (r.tool === "python-http") r.target = versus(3, "python http.server (over HTTP)");
    else if (r.tool === "ferry-tls") {
      // Judged only beside plain ferry (--only may leave it out).
      if (ours !== undefined) {
        r.target = {
          text: "within 25% of ferry without TLS",
          pass: r.ferryRatio !== undefined && r.ferryRatio <= 1.25,
        };
      }
    } else if (r.tool === "scp-aes128-gcm" || r.tool === "scp-chacha20") {
      // The encrypted rival is measured against ferry over TLS, not plain ferry.
      const tls = results.find((t) => t.tool === "ferry-tls" && t.direction === r.direction);
      r.ferryRatio = tls?.medianGBps !== undefined && r.medianGBps !== undefined
        ? tls.medianGBps / r.medianGBps
        : undefined;
      if (r.tool === "scp-aes128-gcm" && tls !== undefined) {
        r.target = {
          text: "ferry TLS ≥ 2× scp aes128-gcm",
          pass: r.ferryRatio !== undefined && r.ferryRatio >= 2,
        };
      }
    }
    if (r.runs.some((run) => run.error !== undefined) && r.target) r.target.pass = false;
  }
}

function fixed(value: number | undefined, digits: number): string {
  return value === undefined ? "—" : value.toFixed(digits);
}

/** The Markdown table for docs/performance.md. */
export function table(results: CaseResult[]): string {
  const lines = [
    "| Case | Best s | Median s | Best GB/s | Median GB/s | Median CPU s | ferry ÷ this | Peak RSS MiB | Target |",
    "| --- | --: | --: | --: | --: | --: | --: | --: | --- |",
  ];
  for (const r of results) {
    const failed = r.runs.filter((run) => run.error !== undefined).length;
    const target = r.target
      ? `${r.target.pass ? "pass" : "**miss**"}: ${r.target.text}` +
        (failed > 0 ? ` (${failed}/${r.runs.length} runs failed)` : "")
      : "";
    const ratio = r.ferryRatio === undefined ? "—" : `${r.ferryRatio.toFixed(2)}×`;
    // 4 KiB files move a few MB in all: their rate is in files/s (below the table), not GB/s.
    const [bestGBps, medianGBps] = r.files === undefined ? [r.bestGBps, r.medianGBps] : [];
    lines.push(
      `| ${r.label} | ${fixed(r.bestSeconds, 3)} | ${fixed(r.medianSeconds, 3)} | ` +
        `${fixed(bestGBps, 2)} | ${fixed(medianGBps, 2)} | ${fixed(r.medianCpuSeconds, 2)} | ` +
        `${ratio} | ` +
        `${fixed(r.peakRssMiB, 0)} | ${target} |`,
    );
  }
  return lines.join("\n");
}

function formatSize(bytes: number): string {
  for (const [unit, scale] of [["GiB", 1024 * MIB], ["MiB", MIB], ["KiB", 1024]] as const) {
    if (bytes >= scale && bytes % (scale / 1024) === 0) return `${bytes / scale} ${unit}`;
  }
  return `${bytes} bytes`;
}

// ------------------------------------------------------------------------------- machine

/** What the numbers were measured on. */
interface Machine {
  cpus: number;
  cpuModel: string;
  memoryGiB: number;
  kernel: string;
  deno: string;
  python: string;
  /** 1-minute load average when the bench started: anything else running skews the numbers. */
  loadAverage: number;
}

async function describeMachine(): Promise<Machine> {
  const cpuinfo = await readProc("/proc/cpuinfo");
  const meminfo = await readProc("/proc/meminfo");
  let python = "unknown";
  try {
    const out = await new Deno.Command("python3", { args: ["--version"], stdin: "null" }).output();
    python = new TextDecoder().decode(out.stdout).trim().replace(/^Python /, "") || python;
  } catch {
    // Reported as unknown; the seed cases will fail on their own.
  }
  return {
    cpus: navigator.hardwareConcurrency,
    cpuModel: /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1].trim() ?? "unknown CPU",
    memoryGiB: Number(/^MemTotal:\s+(\d+) kB/m.exec(meminfo)?.[1] ?? 0) / MIB,
    kernel: (await readProc("/proc/sys/kernel/osrelease")).trim() || "unknown",
    deno: Deno.version.deno,
    python,
    loadAverage: Number((await readProc("/proc/loadavg")).split(" ")[0]) || 0,
  };
}

function machineLine(m: Machine): string {
  return `Machine: ${m.cpus} CPUs (${m.cpuModel}), ${m.memoryGiB.toFixed(1)} GiB RAM, ` +
    `Linux ${m.kernel}, Deno ${m.deno}, Python ${m.python}; load average ${m.loadAverage} at start.`;
}

// ------------------------------------------------------------------------------- main

async function warmUp(work: string, block: Uint8Array): Promise<void> {
  // The first run of a script compiles and caches it; keep that out of the timings.
  const dir = join(work, "warm-up");
  await Deno.mkdir(join(dir, "root"), { recursive: true });
  const file = join(dir, "small.bin");
  await generateFile(file, 1 << 20, block, 1_000_000);
  try {
    const server = ferryServer(join(dir, "root"), false);
    const port = await listeningPort(server);
    await succeed(ferryClient(port, "put", file, "small.bin"), 60_000);
    await succeed(ferryClient(port, "get", "small.bin", join(dir, "back.bin")), 60_000);
    const receiver = bare("recv", "listen", join(dir, "bare.bin"));
    const barePort = await listeningPort(receiver);
    await succeed(bare("send", `${HOST}:${barePort}`, file), 60_000);
  } catch (error) {
    say(`bench: warm-up failed (${errorText(error)}); carrying on`);
  } finally {
    await stopAll();
    await Deno.remove(dir, { recursive: true });
  }
}

async function runCase(
  spec: CaseSpec,
  bench: Bench,
  work: string,
  run: number,
): Promise<RunRecord> {
  const dir = join(work, `${spec.id}-${run}`);
  await Deno.mkdir(dir);
  let measured: Measured | undefined;
  const record: RunRecord = { run };
  try {
    measured = await spec.measure(bench, dir);
    record.seconds = measured.seconds;
    record.cpuSeconds = measured.cpuSeconds;
    record.gbps = bench.size / measured.seconds / 1e9;
  } catch (error) {
    record.error = errorText(error);
  } finally {
    await stopAll();
  }
  if (measured) {
    record.peakRssKiB = measured.memory.peakKiB;
    const wrong = await verifyFile(measured.output, bench.size, bench.hash);
    if (wrong) record.error = `output check failed: ${wrong}`;
  }
  await Deno.remove(dir, { recursive: true });
  return record;
}

async function runClients(
  files: { path: string; hash: string }[],
  size: number,
  work: string,
  run: number,
): Promise<RunRecord> {
  const dir = join(work, `clients-${run}`);
  const root = join(dir, "root");
  await Deno.mkdir(dir);
  const workload = { work, bytes: files.length * size, sources: files.map((file) => file.path) };
  const record: RunRecord = { run };
  const timeoutMs = 120_000 + (files.length * size) / 10e6 * 1000;
  let server: Proc | undefined;
  try {
    server = ferryServer(root, false);
    const port = await listeningPort(server);
    const clients: Promise<void>[] = [];
    const timing = await timed(workload, async () => {
      for (const file of files) {
        clients.push(succeed(ferryClient(port, "put", file.path, basename(file.path)), timeoutMs));
      }
      await Promise.allSettled(clients);
    });
    record.seconds = timing.seconds;
    record.cpuSeconds = timing.cpuSeconds;
    record.gbps = (files.length * size) / record.seconds / 1e9;
    const failures = (await Promise.allSettled(clients)).filter((s) => s.status === "rejected");
    if (failures.length > 0) {
      const first = (failures[0] as PromiseRejectedResult).reason;
      record.error = `${failures.length} clients failed, first: ${errorText(first)}`;
    }
  } catch (error) {
    record.error = errorText(error);
  } finally {
    await stopAll();
  }
  if (server) record.peakRssKiB = server.peakKiB;
  const stored = await checkStored(root, files, size);
  if (stored) record.error = stored + (record.error ? `; ${record.error}` : "");
  await Deno.remove(dir, { recursive: true });
  return record;
}

/** The files of the many-files case, written once and sent by every run. */
interface SmallFiles {
  paths: string[];
  hashes: string[];
  size: number;
}

async function writeSmallFiles(
  work: string,
  count: number,
  size: number,
  block: Uint8Array,
): Promise<SmallFiles> {
  const dir = join(work, "small-files");
  await Deno.mkdir(dir);
  const files: SmallFiles = { paths: [], hashes: [], size };
  for (let i = 1; i <= count; i++) {
    const path = join(dir, `small-${String(i).padStart(5, "0")}.bin`);
    files.paths.push(path);
    // File numbers apart from the many-clients files', so no two files are alike.
    files.hashes.push(await generateFile(path, size, block, 100_000 + i));
  }
  return files;
}

/**
 * One run of the many-files case: every file through one `ferry mput` (one process, one
 * connection), or through the seed's client once per file, one after another as a shell loop
 * would (one process and one connection each), against that protocol's own server. Timed from
 * the first client's start to the last one's exit; every stored file is checked afterwards.
 */
async function runFiles(
  tool: "ferry" | "seed-python",
  files: SmallFiles,
  work: string,
  run: number,
): Promise<RunRecord> {
  const dir = join(work, `files-${tool}-${run}`);
  const root = join(dir, "root");
  await Deno.mkdir(dir);
  const workload = { work, bytes: files.paths.length * files.size, sources: files.paths };
  const record: RunRecord = { run };
  const timeoutMs = 60_000 + files.paths.length * 1000;
  let server: Proc | undefined;
  try {
    server = tool === "ferry" ? ferryServer(root, false) : seedServer(root);
    const port = await listeningPort(server);
    const timing = await timed(workload, async () => {
      if (tool === "ferry") {
        await succeed(ferryClient(port, "mput", ...files.paths), timeoutMs);
        return;
      }
      for (const path of files.paths) {
        await succeed(seedClient(port, "put", path, basename(path)), timeoutMs);
      }
    });
    record.seconds = timing.seconds;
    record.cpuSeconds = timing.cpuSeconds;
    record.gbps = (files.paths.length * files.size) / record.seconds / 1e9;
    record.filesPerSecond = files.paths.length / record.seconds;
  } catch (error) {
    record.error = errorText(error);
  } finally {
    await stopAll();
  }
  if (server) record.peakRssKiB = server.peakKiB;
  const sent = files.paths.map((path, i) => ({ path, hash: files.hashes[i] }));
  const stored = await checkStored(root, sent, files.size);
  if (stored) record.error = stored + (record.error ? `; ${record.error}` : "");
  await Deno.remove(dir, { recursive: true });
  return record;
}

/** The many-files comparison in one line, for under the table. */
function filesLine(ferry: CaseResult, seed: CaseResult): string {
  const rate = (r: CaseResult) =>
    r.medianSeconds === undefined
      ? "failed"
      : `${fixed(r.medianSeconds, 3)} s, ${fixed(r.medianFilesPerSecond, 0)} files/s`;
  const verdict = seed.target ? (seed.target.pass ? "pass" : "**miss**") : "—";
  const ratio = seed.ferryRatio === undefined ? "—" : `${seed.ferryRatio.toFixed(1)}×`;
  return `Many files (${ferry.files} × ${formatSize(ferry.bytes / ferry.files!)}, medians): ` +
    `ferry mput, one connection: ${rate(ferry)}; seed client once per file: ${rate(seed)}; ` +
    `mput is ${ratio} faster (target ≥ 5×: ${verdict}).`;
}

function describeRun(label: string, record: RunRecord): string {
  if (record.seconds === undefined) return `bench: ${label} run ${record.run}: ${record.error}`;
  const rss = record.peakRssKiB ? `, peak RSS ${(record.peakRssKiB / 1024).toFixed(0)} MiB` : "";
  const error = record.error ? ` — ${record.error}` : "";
  const files = record.filesPerSecond === undefined
    ? ""
    : `, ${record.filesPerSecond.toFixed(0)} files/s`;
  const cpu = record.cpuSeconds === undefined ? "" : `, ${record.cpuSeconds.toFixed(2)} CPU s`;
  return `bench: ${label} run ${record.run}: ${record.seconds.toFixed(3)} s, ` +
    `${record.gbps!.toFixed(2)} GB/s${cpu}${files}${rss}${error}`;
}

async function bench(options: BenchOptions, work: string): Promise<number> {
  const began = performance.now();
  const machine = await describeMachine();
  say(`bench: ${machineLine(machine)}`);
  say(`bench: working in ${work}`);
  const block = randomBlock();
  const source = join(work, "source.bin");
  say(`bench: writing a ${formatSize(options.size)} source file`);
  const hash = await generateFile(source, options.size, block, 0);
  const everything = options.only === undefined;
  const clientFiles: { path: string; hash: string }[] = [];
  const clientDir = join(work, "clients");
  await Deno.mkdir(clientDir);
  if (everything) {
    say(`bench: writing ${options.clients} files of ${formatSize(options.clientSize)}`);
    for (let i = 1; i <= options.clients; i++) {
      const path = join(clientDir, `client-${String(i).padStart(3, "0")}.bin`);
      clientFiles.push({ path, hash: await generateFile(path, options.clientSize, block, i) });
    }
  }
  if (everything) say(`bench: writing ${options.files} files of ${formatSize(options.fileSize)}`);
  const smallFiles = await writeSmallFiles(
    work,
    everything ? options.files : 0,
    options.fileSize,
    block,
  );
  await warmUp(work, block);
  const ssh = await prepareSsh(join(work, "ssh"));
  if (typeof ssh === "string") say(`bench: the scp rows are skipped: ${ssh}`);
  const cases: CaseSpec[] = [];
  const missingTools: string[] = [];
  for (
    const spec of CASES.filter((spec) =>
      (options.only === undefined || options.only.includes(spec.id)) &&
      (typeof ssh !== "string" || !spec.tool.startsWith("scp-"))
    )
  ) {
    const why = await spec.unavailable?.() ?? null;
    if (why === null) cases.push(spec);
    else {
      say(`bench: skipping "${spec.label}": ${why}`);
      missingTools.push(`${spec.label}: ${why}`);
    }
  }

  // Any single process gets a minute plus the time to move the file at 20 MB/s.
  const state: Bench = {
    source,
    size: options.size,
    hash,
    timeoutMs: 60_000 + options.size / 20e3,
    work,
    tlsState: join(work, "tls-state"),
    ssh: typeof ssh === "string" ? undefined : ssh,
  };
  const results: CaseResult[] = cases.map((spec) => ({
    id: spec.id,
    label: spec.label,
    direction: spec.direction,
    tool: spec.tool,
    bytes: options.size,
    runs: [],
  }));
  const many: CaseResult = {
    id: "ferry-put-many",
    label: `ferry put, ${options.clients} clients × ${formatSize(options.clientSize)} at once`,
    direction: "put-many",
    tool: "ferry",
    bytes: options.clients * options.clientSize,
    runs: [],
  };
  const filesBytes = options.files * options.fileSize;
  const filesSize = formatSize(options.fileSize);
  const manyFiles: CaseResult[] = [
    {
      id: "ferry-mput-files",
      label: `ferry mput, ${options.files} × ${filesSize}, one connection`,
      direction: "put-files",
      tool: "ferry",
      bytes: filesBytes,
      files: options.files,
      runs: [],
    },
    {
      id: "seed-put-files",
      label: `seed protocol, Python, ${options.files} × ${filesSize}, one client per file`,
      direction: "put-files",
      tool: "seed-python",
      bytes: filesBytes,
      files: options.files,
      runs: [],
    },
  ];
  // Round-robin over the cases, so that a slow spell of the machine does not hit one case only,
  // starting each round one case later, so that whatever a case inherits from the one before it
  // is not always the same.
  for (let run = 1; run <= options.runs; run++) {
    for (let k = 0; k < cases.length; k++) {
      const i = (k + run - 1) % cases.length;
      const spec = cases[i];
      const record = await runCase(spec, state, work, run);
      results[i].runs.push(record);
      say(describeRun(spec.label, record));
    }
    if (!everything) continue;
    const record = await runClients(clientFiles, options.clientSize, work, run);
    many.runs.push(record);
    say(describeRun(many.label, record));
    for (const result of manyFiles) {
      const filesRecord = await runFiles(
        result.tool as "ferry" | "seed-python",
        smallFiles,
        work,
        run,
      );
      result.runs.push(filesRecord);
      say(describeRun(result.label, filesRecord));
    }
  }
  if (everything) results.push(many, ...manyFiles);
  results.forEach(summarize);
  judge(results);
  // Against an object store, when one runs (scripts/ceph.sh up): issue 18's rows.
  const s3 = everything || options.only!.includes("s3")
    ? await benchS3({ size: options.size, runs: options.runs, say })
    : "S3 rows not run (--only without s3).";

  // The folder rows (scripts/bench_tree.ts): after the others, in a table of their own.
  const trees = everything || options.only!.includes("trees")
    ? treeTable(
      await runTreeBench({
        work: await Deno.makeTempDir({ dir: work, prefix: "trees-" }),
        files: options.treeFiles,
        mixedBytes: options.treeMixed,
        entries: options.treeEntries,
        runs: options.runs,
      }),
    )
    : undefined;
  const markdown = [
    table(results),
    "",
    `${formatSize(options.size)} file (${options.clients} × ${formatSize(options.clientSize)} ` +
    `for the many-clients row), loopback, page cache warm, best and median of ${options.runs} ` +
    `runs; 1 GB = 1e9 bytes; times are whole client processes, startup included; ` +
    `ferry ÷ this and targets use medians (for the scp rows, ferry over TLS ÷ this); ` +
    `the receiving side runs with --no-fsync except in the fsync rows and scp; ` +
    `peak RSS is the server's VmHWM (nc and bare loop: receiver on put, sender on get); ` +
    `CPU s is what the whole machine (${machine.cpus} CPUs) was busy for meanwhile: both sides ` +
    `and the kernel.`,
    ...(everything ? ["", filesLine(manyFiles[0], manyFiles[1])] : [
      "",
      `Only ${options.only!.join(", ")} (--only): not the full bench.`,
    ]),
    ...(typeof ssh === "string" ? ["", `scp rows skipped: ${ssh}.`] : []),
    ...missingTools.map((line) => `\nSkipped: ${line}.`),
    ...(trees
      ? [
        "",
        `Folders (median of ${options.runs} runs, the tools taking turns; the peak-RSS rows ` +
        "one run; see scripts/bench_tree.ts):",
        "",
        trees,
      ]
      : []),
    "",
    s3,
    "",
    machineLine(machine),
  ].join("\n");
  console.log(markdown);

  // `deno task` runs in the repository; a relative --json is meant from where the user stood.
  const jsonPath = options.json !== undefined
    ? resolve(Deno.env.get("INIT_CWD") ?? Deno.cwd(), options.json)
    : join(await Deno.makeTempDir({ prefix: "ferry-bench-results-" }), "bench-results.json");
  const report = {
    date: new Date().toISOString(),
    machine,
    options: {
      size: options.size,
      runs: options.runs,
      clients: options.clients,
      clientSize: options.clientSize,
      files: options.files,
      fileSize: options.fileSize,
      only: options.only,
    },
    results,
    markdown,
  };
  await Deno.writeTextFile(jsonPath, JSON.stringify(report, null, 2) + "\n");
  say(`bench: results written to ${jsonPath}`);
  say(`bench: done in ${((performance.now() - began) / 1000).toFixed(1)} s`);
  return 0;
}

async function main(argv: string[]): Promise<number> {
  let options: BenchOptions;
  try {
    options = parseOptions(argv);
  } catch (error) {
    // parseArgs explains at length; the first sentence is the useful part.
    say(`bench: ${errorText(error).split(". ")[0]}`);
    say("Try 'deno task bench --help' for usage");
    return 2;
  }
  if (options.help) {
    console.log(USAGE);
    return 0;
  }
  const work = await Deno.makeTempDir({ prefix: "ferry-bench-" });
  const cleanUpNow = () => {
    for (const proc of running) signal(proc, "SIGKILL");
    try {
      Deno.removeSync(work, { recursive: true });
    } catch {
      // Already gone.
    }
  };
  const interrupted = () => {
    say("bench: interrupted; cleaning up");
    cleanUpNow();
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", interrupted);
  Deno.addSignalListener("SIGTERM", interrupted);
  try {
    return await bench(options, work);
  } catch (error) {
    say(`bench: ${errorText(error)}`);
    return 1;
  } finally {
    await stopAll();
    cleanUpNow();
    Deno.removeSignalListener("SIGINT", interrupted);
    Deno.removeSignalListener("SIGTERM", interrupted);
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
