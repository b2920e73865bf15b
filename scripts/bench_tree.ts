/**
 * The folder rows of `deno task bench` (issue 14): a tree of many small files in nested folders,
 * generated deterministically, sent with `put -r` and fetched with `get -r` beside `rsync -a` to
 * an rsync daemon (`rsync://`, started here on a free loopback port with a generated
 * rsyncd.conf) and `tar c | nc`; the same tree re-synced with nothing changed; a mixed tree of a
 * few large files and many small ones; `list --long` (and plain `list`, names only) of one
 * folder of many files beside `rsync --list-only`; the server's peak RSS for a tree of many
 * entries; and the peak RSS of a folder of many entries listed, by the client (`list --long`)
 * and as the server's HTML page.
 * Like is compared with like: ferry's default (fsync) beside `rsync --fsync`, ferry `--no-fsync`
 * beside rsync's default; every row says which. rsync runs with TCP_NODELAY on both ends, as ferry
 * does; with its default sockets each exchange waits on a delayed ACK, which the no-change and list
 * rows also show, apart. Rows whose tool is missing are skipped with a note.
 * Each timed row shows the median of `--runs` runs, the tools taking turns, because this VM's disk
 * changes pace over seconds (a single run of the same command varied fivefold).
 *
 * Run alone: `deno run -A scripts/bench_tree.ts [--files N] [--mixed SIZE] [--entries N]`;
 * `deno task bench` runs it after its own cases (`--only trees` runs it alone).
 *
 * @module
 */

import { median } from "./bench_stats.ts";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const REPO = fileURLToPath(new URL("..", import.meta.url));
const HOST = "127.0.0.1";
const MIB = 1024 * 1024;

/** Settings of the tree rows. */
export interface TreeBenchOptions {
  /** Files of 4 KiB in the nested tree (default 10,000). */
  files: number;
  /** Bytes of the mixed tree (default 500 MiB). */
  mixedBytes: number;
  /** Entries of the tree whose server peak RSS is measured (default 100,000). */
  entries: number;
  /** Where to work (a fresh folder). */
  work: string;
  /**
   * Runs of every timed row, whose median is shown (default 1). Rows that write a tree empty its
   * destination before each run, and their tools take turns (rsync, ferry, rsync, ferry...), so
   * that the disk's moods fall on both alike; the peak-RSS rows run once.
   */
  runs?: number;
}

/** One row: what ran, its wall time, and a note. */
export interface TreeRow {
  /** Row label. */
  label: string;
  /** Wall-clock seconds of the whole client run; undefined when it failed or was skipped. */
  seconds?: number;
  /** Peak RSS in MiB, where measured: the server's, unless the label says the client's. */
  peakMiB?: number;
  /** What this row is compared with, or why it failed or was skipped. */
  note: string;
}

function say(line: string): void {
  console.error(`bench: ${line}`);
}

/** A small deterministic generator (xorshift32), so every run writes the same tree. */
function filler(seed: number): (bytes: Uint8Array) => void {
  let x = seed | 1;
  return (bytes) => {
    for (let i = 0; i < bytes.length; i += 4) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      bytes[i] = x;
      bytes[i + 1] = x >>> 8;
      bytes[i + 2] = x >>> 16;
      bytes[i + 3] = x >>> 24;
    }
  };
}

/** `count` files of `size` bytes in nested folders: 10 top folders, 10 below each, then files. */
async function writeTree(dir: string, count: number, size: number, seed: number): Promise<void> {
  const fill = filler(seed);
  const bytes = new Uint8Array(size);
  for (let i = 0; i < count; i++) {
    const folder = join(dir, `d${i % 10}`, `e${Math.floor(i / 10) % 10}`);
    if (i < 100) await Deno.mkdir(folder, { recursive: true });
    fill(bytes);
    await Deno.writeFile(join(folder, `f${String(i).padStart(6, "0")}.bin`), bytes);
  }
}

/** A mixed tree of about `total` bytes: four large files and the rest as 16 KiB files. */
async function writeMixed(dir: string, total: number): Promise<void> {
  await Deno.mkdir(join(dir, "big"), { recursive: true });
  const fill = filler(7);
  const large = Math.floor(total * 0.8 / 4);
  const chunk = new Uint8Array(Math.min(large, 8 * MIB));
  for (let i = 0; i < 4; i++) {
    using file = await Deno.open(join(dir, "big", `large${i}.bin`), { write: true, create: true });
    for (let left = large; left > 0; left -= chunk.length) {
      fill(chunk);
      await file.write(chunk.subarray(0, Math.min(chunk.length, left)));
    }
  }
  const small = Math.max(1, Math.floor(total * 0.2 / (16 << 10)));
  await writeTree(join(dir, "small"), small, 16 << 10, 11);
}

/** Runs a command to the end; throws with its stderr if it fails. Returns wall seconds. */
async function run(cmd: string, args: string[], cwd?: string): Promise<number> {
  const started = performance.now();
  const out = await new Deno.Command(cmd, { args, cwd, stdout: "null", stderr: "piped" }).output();
  const seconds = (performance.now() - started) / 1000;
  if (!out.success) {
    const text = new TextDecoder().decode(out.stderr).trim().split("\n").slice(-2).join(" / ");
    throw new Error(`${cmd} ${args[0]} failed: ${text}`);
  }
  return seconds;
}

async function have(program: string, args: string[]): Promise<boolean> {
  try {
    return (await new Deno.Command(program, { args, stdout: "null", stderr: "null" }).output())
      .success;
  } catch {
    return false;
  }
}

function freePort(): number {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

async function waitListening(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      (await Deno.connect({ hostname: HOST, port })).close();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error(`nothing listens on ${HOST}:${port}`);
}

/** A process started in the background, stopped with {@link stop}. */
interface Background {
  child: Deno.ChildProcess;
  port: number;
}

async function stop(proc: Background): Promise<void> {
  try {
    proc.child.kill("SIGTERM");
  } catch {
    // Gone already.
  }
  await proc.child.status;
}

/** The peak RSS (VmHWM) of a running process, in MiB, read through cat (/proc needs it). */
async function peakMiB(pid: number): Promise<number | undefined> {
  const out = await new Deno.Command("cat", { args: [`/proc/${pid}/status`], stdout: "piped" })
    .output();
  const match = /VmHWM:\s+(\d+) kB/.exec(new TextDecoder().decode(out.stdout));
  return match ? Number(match[1]) / 1024 : undefined;
}

async function ferryServer(
  root: string,
  fsync: boolean,
  extra: string[] = [],
): Promise<Background> {
  await Deno.mkdir(root, { recursive: true });
  const port = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-read",
      "--allow-write",
      join(REPO, "server.ts"),
      String(port),
      "--root",
      root,
      ...(fsync ? [] : ["--no-fsync"]),
      ...extra,
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  await waitListening(port);
  return { child, port };
}

function ferry(port: number, ...args: string[]): [string, string[]] {
  return [Deno.execPath(), [
    "run",
    "--allow-net",
    "--allow-read",
    "--allow-write",
    "--allow-env",
    join(REPO, "client.ts"),
    HOST,
    String(port),
    ...args,
    "--quiet",
  ]];
}

/**
 * rsync's client option for TCP_NODELAY. ferry's sockets have it; rsync's default sockets wait on
 * delayed ACKs (some 40 ms an exchange on loopback), which would flatter ferry.
 */
const NODELAY = "--sockopts=TCP_NODELAY";

/**
 * An rsync daemon serving `dir` as module `m`, read-write, on a free loopback port; with
 * TCP_NODELAY unless `defaultSockets`.
 */
async function rsyncDaemon(dir: string, work: string, defaultSockets = false): Promise<Background> {
  await Deno.mkdir(dir, { recursive: true });
  const port = freePort();
  const conf = join(work, `rsyncd-${port}.conf`);
  // `id -u` rather than Deno.uid(), which needs --allow-sys, which `deno task bench` does not grant.
  const id = await new Deno.Command("id", { args: ["-u"], stdout: "piped" }).output();
  const root = new TextDecoder().decode(id.stdout).trim() === "0";
  await Deno.writeTextFile(
    conf,
    [
      `port = ${port}`,
      `address = ${HOST}`,
      `pid file = ${join(work, `rsyncd-${port}.pid`)}`,
      "use chroot = no",
      ...(defaultSockets ? [] : ["socket options = TCP_NODELAY"]),
      ...(root ? ["uid = root", "gid = root"] : []),
      "[m]",
      `path = ${dir}`,
      "read only = no",
      "",
    ].join("\n"),
  );
  const child = new Deno.Command("rsync", {
    args: ["--daemon", "--no-detach", `--config=${conf}`],
    stdout: "null",
    stderr: "null",
  }).spawn();
  await waitListening(port);
  return { child, port };
}

/** `tar c DIR | nc` into `nc -l | tar x` in `into`; returns wall seconds. */
async function tarNc(from: string, name: string, into: string): Promise<number> {
  await Deno.mkdir(into, { recursive: true });
  const port = freePort();
  const receiver = new Deno.Command("sh", {
    args: ["-c", `nc -l ${HOST} ${port} | tar xf - -C "$1"`, "sh", into],
    stdout: "null",
    stderr: "null",
  }).spawn();
  await new Promise((r) => setTimeout(r, 200));
  const started = performance.now();
  await run("sh", ["-c", `tar cf - -C "$1" "$2" | nc -N ${HOST} ${port}`, "sh", from, name]);
  const status = await receiver.status;
  const seconds = (performance.now() - started) / 1000;
  // Counted only if every file arrived: the same tree, compared by size.
  const got = await run("diff", ["-r", join(from, name), join(into, name)]).catch(() => null);
  if (!status.success || got === null) throw new Error("tar | nc did not deliver the whole tree");
  return seconds;
}

/** Throws unless the two folders hold the same tree (diff -r): a row counts only if it arrived. */
async function same(a: string, b: string): Promise<void> {
  await run("diff", ["-r", a, b]).catch(() => {
    throw new Error(`${b} is not a copy of ${a}`);
  });
}

/** The note comparing ferry's time with another's; nothing when either is missing or failed. */
function ratio(ferrySeconds: number | undefined, other: number | Error | undefined): string {
  if (ferrySeconds === undefined || typeof other !== "number") return "";
  return `, ferry is ${(other / ferrySeconds).toFixed(2)}× its speed`;
}

/**
 * Runs each of `steps` once per round, `rounds` times, the steps taking turns (A B A B ...), so that
 * whatever this machine's disk does over time falls on all of them alike. Each step's median, or
 * the error that stopped it (the others go on); an undefined step is skipped.
 */
async function paired(
  rounds: number,
  steps: (((round: number) => Promise<number>) | undefined)[],
): Promise<(number | Error | undefined)[]> {
  const times: number[][] = steps.map(() => []);
  const failed: (Error | undefined)[] = steps.map(() => undefined);
  for (let round = 0; round < rounds; round++) {
    for (const [i, step] of steps.entries()) {
      if (!step || failed[i]) continue;
      try {
        times[i].push(await step(round));
      } catch (error) {
        failed[i] = error instanceof Error ? error : new Error(String(error));
      }
    }
  }
  return steps.map((step, i) => step ? failed[i] ?? median(times[i]) : undefined);
}

/**
 * A {@link paired} step that writes a tree: empties `dest`, runs the command, and, given `copyOf`,
 * counts the run only if `dest` is then a copy of that tree.
 */
function copying(
  dest: string,
  [cmd, args]: [string, string[]],
  copyOf?: string,
): () => Promise<number> {
  return async () => {
    await clear(dest);
    const seconds = await run(cmd, args);
    if (copyOf !== undefined) await same(copyOf, dest);
    return seconds;
  };
}

/** Empties `dir` (a destination between two runs), which may not exist yet. */
async function clear(dir: string): Promise<void> {
  await Deno.remove(dir, { recursive: true }).catch((error) => {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  });
}

/** The seconds of a {@link paired} step, or throws what stopped it. */
function secondsOf(result: number | Error | undefined): number {
  if (result instanceof Error) throw result;
  return result!;
}

/**
 * rsync's no-change pass and list with its default sockets, as rows apart: what a user who never
 * set TCP_NODELAY sees, never the reference of a ratio.
 */
async function rsyncDefaultSockets(
  dir: string,
  work: string,
  src: string,
  label: string,
  attempt: (label: string, body: () => Promise<TreeRow>) => Promise<void>,
  runAgain: (cmd: string, args: string[]) => Promise<number>,
): Promise<void> {
  const daemon = await rsyncDaemon(dir, work, true);
  const note = "rsync's default sockets (no TCP_NODELAY): not a reference";
  try {
    await attempt("rsync no-change pass, default sockets", async () => ({
      label: `rsync -a again, nothing changed, default sockets, ${label}`,
      seconds: await runAgain("rsync", [
        "-a",
        join(src, "tree"),
        `rsync://${HOST}:${daemon.port}/m/`,
      ]),
      note,
    }));
    await attempt("rsync --list-only, default sockets", async () => ({
      label: `rsync --list-only, default sockets, the same folder`,
      seconds: await runAgain("rsync", ["--list-only", `rsync://${HOST}:${daemon.port}/m/many/`]),
      note,
    }));
  } finally {
    await stop(daemon);
  }
}

/** Runs every tree row (see `runs`) and returns them; a failing row is reported, not thrown. */
export async function runTreeBench(options: TreeBenchOptions): Promise<TreeRow[]> {
  const rows: TreeRow[] = [];
  const { work, files } = options;
  const rsync = await have("rsync", ["--version"]);
  const nc = await have("sh", ["-c", "nc -h 2>&1 | grep -q -- -N"]);
  const skipped = (what: string) => `skipped: ${what} is not installed (apt-get install ${what})`;
  const src = join(work, "tree-src");
  say(`tree rows: writing ${files} files of 4 KiB in nested folders`);
  await writeTree(join(src, "tree"), files, 4096, 1);
  const attempt = async (label: string, body: () => Promise<TreeRow>) => {
    try {
      const row = await body();
      rows.push(row);
      say(`${row.label}: ${row.seconds?.toFixed(3) ?? "—"} s; ${row.note}`);
    } catch (error) {
      rows.push({ label, note: `failed: ${error instanceof Error ? error.message : error}` });
      say(`${label}: failed: ${error}`);
    }
  };
  const label = `${files} × 4 KiB, nested`;
  const runs = Math.max(1, options.runs ?? 1);
  /** The median of `runs` runs of a command that leaves things as it found them. */
  const runAgain = async (cmd: string, args: string[]): Promise<number> => {
    const times: number[] = [];
    for (let i = 0; i < runs; i++) times.push(await run(cmd, args));
    return median(times);
  };
  for (const fsync of [false, true]) {
    const mode = fsync ? "fsync" : "no fsync";
    const rsyncLabel = `rsync -a${fsync ? " --fsync" : ""} to daemon, ${label}`;
    const rsyncRoot = join(work, `rsync-root-${fsync}`);
    const ferryRoot = join(work, `ferry-root-${fsync}`);
    const daemon = rsync ? await rsyncDaemon(rsyncRoot, work) : undefined;
    const server = await ferryServer(ferryRoot, fsync);
    try {
      const [rsyncPut, ferryPut] = await paired(runs, [
        daemon && copying(join(rsyncRoot, "tree"), [
          "rsync",
          [
            "-a",
            NODELAY,
            ...(fsync ? ["--fsync"] : []),
            join(src, "tree"),
            `rsync://${HOST}:${daemon.port}/m/`,
          ],
        ]),
        copying(
          join(ferryRoot, "tree"),
          ferry(server.port, "put", "-r", join(src, "tree")),
          join(src, "tree"),
        ),
      ]);
      if (daemon) {
        await attempt(
          rsyncLabel,
          () =>
            Promise.resolve({
              label: rsyncLabel,
              seconds: secondsOf(rsyncPut),
              note: `rsync, ${mode}`,
            }),
        );
      }
      const peak = await peakMiB(server.child.pid);
      await attempt(`ferry put -r, ${label}, ${mode}`, () => {
        const seconds = secondsOf(ferryPut);
        return Promise.resolve({
          label: `ferry put -r, ${label}, ${fsync ? "server default (fsync)" : "--no-fsync"}`,
          seconds,
          peakMiB: peak,
          note: rsync
            ? `vs rsync -a${fsync ? " --fsync" : ""}${ratio(seconds, rsyncPut)}`
            : skipped("rsync"),
        });
      });
    } finally {
      await stop(server);
      if (daemon) await stop(daemon);
    }
  }
  let tarSeconds: number | undefined;
  if (nc) {
    await attempt(`tar c | nc, ${label}`, async () => {
      const [seconds] = await paired(runs, [async () => {
        await clear(join(work, "tar-put"));
        return await tarNc(src, "tree", join(work, "tar-put"));
      }]);
      tarSeconds = secondsOf(seconds);
      return {
        label: `tar c | nc → nc -l | tar x, ${label}`,
        seconds: tarSeconds,
        note: "no fsync",
      };
    });
  } else rows.push({ label: `tar c | nc, ${label}`, note: skipped("netcat-openbsd") });

  // get -r, re-sync with nothing changed, list: from one server (no fsync, beside rsync's default).
  const server = await ferryServer(join(work, "ferry-root-false"), false);
  const daemon = rsync ? await rsyncDaemon(join(work, "rsync-root-false"), work) : undefined;
  try {
    const [rsyncGet, ferryGet] = await paired(runs, [
      daemon && copying(join(work, "rsync-get"), [
        "rsync",
        ["-a", NODELAY, `rsync://${HOST}:${daemon.port}/m/tree`, join(work, "rsync-get")],
      ]),
      copying(
        join(work, "ferry-get"),
        ferry(server.port, "get", "-r", "tree", join(work, "ferry-get"), "--no-fsync"),
        join(src, "tree"),
      ),
    ]);
    if (daemon) {
      await attempt(`rsync -a from daemon, ${label}`, () =>
        Promise.resolve({
          label: `rsync -a from daemon, ${label}`,
          seconds: secondsOf(rsyncGet),
          note: "no fsync",
        }));
    }
    await attempt(`ferry get -r, ${label}`, () => {
      const seconds = secondsOf(ferryGet);
      return Promise.resolve({
        label: `ferry get -r --no-fsync, ${label}`,
        seconds,
        note: daemon
          ? `vs rsync -a${ratio(seconds, rsyncGet)}; tar c | nc took ${
            tarSeconds?.toFixed(3) ?? "—"
          } s one way`
          : skipped("rsync"),
      });
    });
    let rsyncAgain: number | undefined;
    if (daemon) {
      await attempt(`rsync -a no-change pass`, async () => {
        rsyncAgain = await runAgain("rsync", [
          "-a",
          NODELAY,
          join(src, "tree"),
          `rsync://${HOST}:${daemon.port}/m/`,
        ]);
        return {
          label: `rsync -a again, nothing changed, ${label}`,
          seconds: rsyncAgain,
          note: "",
        };
      });
    }
    await attempt(`ferry put -r no-change pass`, async () => {
      const [cmd, args] = ferry(server.port, "put", "-r", join(src, "tree"));
      const seconds = await runAgain(cmd, args);
      return {
        label: `ferry put -r again, nothing changed, ${label}`,
        seconds,
        note: daemon
          ? `vs rsync's no-change pass${ratio(seconds, rsyncAgain)} (target ≥ 2×)`
          : skipped("rsync"),
      };
    });
    // list of one folder of `files` files.
    const flat = join(work, "flat");
    say(`tree rows: writing one folder of ${files} files`);
    await Deno.mkdir(join(flat, "many"), { recursive: true });
    for (let i = 0; i < files; i++) {
      await Deno.writeFile(join(flat, "many", `f${String(i).padStart(6, "0")}`), new Uint8Array(1));
    }
    const [cmd, args] = ferry(server.port, "put", "-r", join(flat, "many"));
    await run(cmd, args);
    let rsyncList: number | undefined;
    if (daemon) {
      await run("rsync", ["-a", NODELAY, join(flat, "many"), `rsync://${HOST}:${daemon.port}/m/`]);
      await attempt("rsync --list-only", async () => {
        rsyncList = await runAgain("rsync", [
          "--list-only",
          NODELAY,
          `rsync://${HOST}:${daemon.port}/m/many/`,
        ]);
        return {
          label: `rsync --list-only, one folder of ${files} files`,
          seconds: rsyncList,
          note: "",
        };
      });
    }
    // --long prints what rsync --list-only does: mode, size, time and name.
    await attempt("ferry list", async () => {
      const [cmd, args] = ferry(server.port, "list", "--long", "many");
      const seconds = await runAgain(cmd, args);
      return {
        label: `ferry list --long DIR, one folder of ${files} files`,
        seconds,
        note: daemon ? `vs rsync --list-only${ratio(seconds, rsyncList)}` : skipped("rsync"),
      };
    });
    // Plain list prints names alone, and asks the server for nothing else (no lookup a file):
    // rsync has no such listing, so the ratio flatters ferry, and says so.
    await attempt("ferry list (names)", async () => {
      const [cmd, args] = ferry(server.port, "list", "many");
      const seconds = await runAgain(cmd, args);
      return {
        label: `ferry list DIR (names only), one folder of ${files} files`,
        seconds,
        note: daemon
          ? `vs rsync --list-only${ratio(seconds, rsyncList)}; not like for like: rsync ` +
            "prints mode, size and time too"
          : skipped("rsync"),
      };
    });
    // The floor under every ferry row: a client that starts, connects to nothing and exits.
    // When it takes about as long as rsync's whole pass, no server work can close the gap.
    await attempt("ferry --version", async () => {
      const [cmd, args] = ferry(server.port);
      const seconds = await runAgain(cmd, [...args.slice(0, args.indexOf(HOST)), "--version"]);
      const empty = await runAgain(Deno.execPath(), ["eval", ""]);
      return {
        label: "ferry --version (the client's start and exit alone)",
        seconds,
        note: `floor of each ferry row; the runtime alone (deno eval "") ${empty.toFixed(3)} s` +
          (rsyncList ? `; rsync --list-only's whole pass ${rsyncList.toFixed(3)} s` : ""),
      };
    });
    if (daemon) {
      await rsyncDefaultSockets(
        join(work, "rsync-root-false"),
        work,
        src,
        label,
        attempt,
        runAgain,
      );
    }
  } finally {
    await stop(server);
    if (daemon) await stop(daemon);
  }

  // The mixed tree.
  say(`tree rows: writing a mixed tree of ${(options.mixedBytes / MIB).toFixed(0)} MiB`);
  const mixed = join(work, "mixed-src", "mixed");
  await writeMixed(mixed, options.mixedBytes);
  const mixedLabel = `mixed tree, ${
    (options.mixedBytes / MIB).toFixed(0)
  } MiB (4 large, rest 16 KiB)`;
  const rsyncMixedRoot = join(work, "rsync-mixed");
  const ferryMixedRoot = join(work, "ferry-mixed");
  const mixedDaemon = rsync ? await rsyncDaemon(rsyncMixedRoot, work) : undefined;
  const mixedServer = await ferryServer(ferryMixedRoot, false);
  try {
    const [rsyncMixed, ferryMixed] = await paired(runs, [
      mixedDaemon && copying(join(rsyncMixedRoot, "mixed"), [
        "rsync",
        ["-a", NODELAY, mixed, `rsync://${HOST}:${mixedDaemon.port}/m/`],
      ]),
      copying(
        join(ferryMixedRoot, "mixed"),
        ferry(mixedServer.port, "put", "-r", mixed),
        mixed,
      ),
    ]);
    if (mixedDaemon) {
      await attempt(`rsync -a, ${mixedLabel}`, () =>
        Promise.resolve({
          label: `rsync -a to daemon, ${mixedLabel}`,
          seconds: secondsOf(rsyncMixed),
          note: "no fsync",
        }));
    }
    const peak = await peakMiB(mixedServer.child.pid);
    await attempt(`ferry put -r, ${mixedLabel}`, () => {
      const seconds = secondsOf(ferryMixed);
      return Promise.resolve({
        label: `ferry put -r --no-fsync, ${mixedLabel}`,
        seconds,
        peakMiB: peak,
        note: rsync ? `vs rsync -a${ratio(seconds, rsyncMixed)}` : skipped("rsync"),
      });
    });
  } finally {
    await stop(mixedServer);
    if (mixedDaemon) await stop(mixedDaemon);
  }

  // Server peak RSS for a tree of many entries (empty files: the entries are what counts).
  say(`tree rows: writing a tree of ${options.entries} entries`);
  const big = join(work, "entries-src", "entries");
  await writeTree(big, options.entries, 0, 3);
  await attempt("server peak RSS", async () => {
    const s = await ferryServer(join(work, "ferry-entries"), false);
    try {
      const [cmd, args] = ferry(s.port, "put", "-r", big);
      const seconds = await run(cmd, args);
      const peak = await peakMiB(s.child.pid);
      return {
        label: `ferry put -r --no-fsync, ${options.entries} entries (server peak RSS)`,
        seconds,
        peakMiB: peak,
        note: `server peak RSS ${peak?.toFixed(0) ?? "?"} MiB (target < 300 MiB)`,
      };
    } finally {
      await stop(s);
    }
  });
  await listingPeaks(options.entries, work, attempt);
  return rows;
}

/**
 * Peak RSS of listing one folder of `entries` empty files: the client printing `list --long` (as
 * `/usr/bin/time` reports it), and the server sending the folder's HTML page (its first page, past
 * `--http-page-size`) and then the whole folder as `?json`, to a reader that keeps none of it. All
 * stream; what the server still holds is, for a folder past
 * `BIG_FOLDER_BYTES` on disk, a run of its names at a time (lib/name_runs.ts), and for a smaller
 * one its names, sorted by its walk (lib/tree_listing.ts). `--tree-entries 1000000` shows how
 * little more a folder ten times the usual costs.
 */
export async function listingPeaks(
  entries: number,
  work: string,
  attempt: (label: string, body: () => Promise<TreeRow>) => Promise<void>,
): Promise<void> {
  const root = join(work, "ferry-wide");
  say(`tree rows: writing one folder of ${entries} entries`);
  await Deno.mkdir(join(root, "many"), { recursive: true });
  await run("sh", [
    "-c",
    `cd "$1" && seq -f 'f%07g' 0 $(($2 - 1)) | xargs touch`,
    "sh",
    join(root, "many"),
    String(entries),
  ]);
  const httpPort = freePort();
  const s = await ferryServer(root, false, ["--http", `${HOST}:${httpPort}`]);
  try {
    await waitListening(httpPort);
    const before = await peakMiB(s.child.pid);
    // The page (the first of a paged folder), then the whole folder as ?json: the peak is a
    // high-water mark, so the smaller first.
    for (
      const [query, what] of [
        ["", "HTTP page"],
        ["?json", "HTTP ?json of the whole folder"],
      ]
    ) {
      await attempt(`server peak RSS, ${what}`, async () => {
        const started = performance.now();
        const response = await fetch(`http://${HOST}:${httpPort}/many/${query}`, {
          headers: { accept: query ? "application/json" : "text/html" },
        });
        let bytes = 0;
        for await (const chunk of response.body!) bytes += chunk.length;
        if (!response.ok) throw new Error(`${what} answered ${response.status}`);
        const seconds = (performance.now() - started) / 1000;
        const peak = await peakMiB(s.child.pid);
        return {
          label: `${what}, one folder of ${entries} entries (server peak RSS)`,
          seconds,
          peakMiB: peak,
          note: `server peak RSS ${peak?.toFixed(0) ?? "?"} MiB, ${
            before?.toFixed(0) ?? "?"
          } MiB before the requests; ${(bytes / MIB).toFixed(1)} MiB sent`,
        };
      });
    }
    const timed = await have("/usr/bin/time", ["-f", "%M", "true"]);
    if (!timed) {
      return void await attempt("client peak RSS, list --long", () => {
        throw new Error("skipped: /usr/bin/time is not installed (apt-get install time)");
      });
    }
    await attempt("client peak RSS, list --long", async () => {
      const [cmd, args] = ferry(s.port, "list", "--long", "many");
      const started = performance.now();
      const out = await new Deno.Command("/usr/bin/time", {
        args: ["-f", "%M", cmd, ...args],
        stdout: "null",
        stderr: "piped",
      }).output();
      const seconds = (performance.now() - started) / 1000;
      const text = new TextDecoder().decode(out.stderr).trim();
      if (!out.success) throw new Error(`list --long failed: ${text.split("\n").at(-1)}`);
      const peak = Number(text.split("\n").at(-1)) / 1024;
      return {
        label: `ferry list --long DIR, one folder of ${entries} entries (client peak RSS)`,
        seconds,
        peakMiB: peak,
        note: `client peak RSS ${peak.toFixed(0)} MiB`,
      };
    });
  } finally {
    await stop(s);
  }
}

/** A table cell's text: a `|` of its own would end the cell. */
function cell(text: string): string {
  return text.replaceAll("|", "\\|");
}

/** The rows as Markdown table lines: case, seconds, peak RSS (the server's, or as labelled), note. */
export function treeTable(rows: TreeRow[]): string {
  const lines = [
    "| tree case | s | peak RSS MiB (whose: in the case) | note |",
    "| --- | ---: | ---: | --- |",
    ...rows.map((r) => ({ ...r, label: cell(r.label), note: cell(r.note) })).map((r) =>
      `| ${r.label} | ${r.seconds?.toFixed(3) ?? "—"} | ${
        r.peakMiB?.toFixed(0) ?? "—"
      } | ${r.note} |`
    ),
  ];
  return lines.join("\n");
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      files: { type: "string", default: "10000" },
      mixed: { type: "string", default: "500" },
      entries: { type: "string", default: "100000" },
    },
  });
  const work = await Deno.makeTempDir({ prefix: "ferry-bench-tree-" });
  try {
    const rows = await runTreeBench({
      work,
      files: Number(values.files),
      mixedBytes: Number(values.mixed) * MIB,
      entries: Number(values.entries),
    });
    console.log(treeTable(rows));
  } finally {
    await Deno.remove(work, { recursive: true });
  }
}
