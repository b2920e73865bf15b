/**
 * Integration-test harness: runs the real ferry server and client as subprocesses, the way a
 * user would, against throw-away folders.
 *
 * - {@link startServer} spawns `server.ts` on port 0 with a temporary root, learns the port from
 *   the banner it prints on stderr, keeps collecting its log lines in the background, and stops
 *   it with SIGTERM. Use it with `await using` so the process and its folder are always cleaned.
 * - {@link runClient} runs `client.ts` to completion and returns its exit code and output;
 *   {@link spawnClient} starts one for tests that must feed or kill it mid-way.
 * - {@link assertRootHolds} checks what a served root holds, the server's private folders
 *   included; {@link makeTempDir}, {@link waitFor}, {@link randomBytes}, {@link writeRandomFile}
 *   and {@link filesEqual} are the small utilities the tests share.
 *
 * @module
 */

import assert from "node:assert/strict";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";

/** Absolute path of the repository (the folder above tests/), where the programs live. */
export const REPO_ROOT: string = fileURLToPath(new URL("..", import.meta.url));

/** The server's hidden folder for uploads in progress, at the top of its root. */
export const STAGING_DIR = ".ferry-staging";

/** Prefix of the hidden folders the server keeps for itself at the top of its root. */
const PRIVATE_PREFIX = ".ferry-";

/** Permission flags the programs are run with: what a user's `deno run` line would give. */
const PROGRAM_PERMISSIONS = ["--allow-net", "--allow-read", "--allow-write"];

const decoder = new TextDecoder();

/** A temporary folder that removes itself (recursively) when disposed. */
export interface TempDir extends AsyncDisposable {
  /** Absolute path of the folder. */
  path: string;
}

/** Options for {@link makeTempDir}. */
export interface TempDirOptions {
  /** Prefix of the folder name, to tell test leftovers apart. */
  prefix?: string;
}

/** Creates a temporary folder with Deno.makeTempDir; dispose it (`await using`) to remove it. */
export async function makeTempDir(options: TempDirOptions = {}): Promise<TempDir> {
  const path = await Deno.makeTempDir({ prefix: options.prefix ?? "ferry_test_" });
  return {
    path,
    async [Symbol.asyncDispose]() {
      await Deno.remove(path, { recursive: true }).catch((error) => {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      });
    },
  };
}

/** Options for {@link waitFor}. */
export interface WaitOptions {
  /** Give up after this many milliseconds (default 10000). */
  timeoutMs?: number;
  /** Delay between checks in milliseconds (default 20). */
  intervalMs?: number;
}

/**
 * Polls `check` until it returns true, and throws (naming `what`) if the deadline passes first.
 * This is how tests wait for something the server does asynchronously: a bounded poll on the
 * condition itself, never a fixed sleep.
 */
export async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  options: WaitOptions = {},
): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 10000;
  const intervalMs = options.intervalMs ?? 20;
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) {
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** Returns `size` cryptographically random bytes (so no two test files ever compress alike). */
export function randomBytes(size: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(size);
  // getRandomValues fills at most 65536 bytes per call.
  for (let offset = 0; offset < size; offset += 65536) {
    crypto.getRandomValues(bytes.subarray(offset, Math.min(size, offset + 65536)));
  }
  return bytes;
}

/**
 * Writes a file of `size` random bytes, one MiB at a time so that even the 100 MiB case never
 * needs the whole file in memory.
 */
export async function writeRandomFile(path: string, size: number): Promise<void> {
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  const block = 1 << 20;
  for (let written = 0; written < size;) {
    const chunk = randomBytes(Math.min(block, size - written));
    for (let offset = 0; offset < chunk.length;) {
      offset += await file.write(chunk.subarray(offset));
    }
    written += chunk.length;
  }
}

async function readFully(file: Deno.FsFile, buffer: Uint8Array): Promise<number> {
  let filled = 0;
  while (filled < buffer.length) {
    const n = await file.read(buffer.subarray(filled));
    if (n === null) break;
    filled += n;
  }
  return filled;
}

/** True when the two files have exactly the same bytes; compared a MiB at a time. */
export async function filesEqual(a: string, b: string): Promise<boolean> {
  using fa = await Deno.open(a, { read: true });
  using fb = await Deno.open(b, { read: true });
  if ((await fa.stat()).size !== (await fb.stat()).size) return false;
  const bufA = new Uint8Array(1 << 20);
  const bufB = new Uint8Array(1 << 20);
  while (true) {
    const [na, nb] = await Promise.all([readFully(fa, bufA), readFully(fb, bufB)]);
    if (na !== nb) return false;
    if (na === 0) return true;
    for (let i = 0; i < na; i++) if (bufA[i] !== bufB[i]) return false;
  }
}

/** Names in a folder, sorted; an empty list when the folder does not exist. */
export async function listDir(path: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(path)) names.push(entry.name);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return names.sort();
}

/** True if something (file, folder or symlink, even dangling) exists at `path`. */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/** Options for {@link assertRootHolds}. */
export interface RootHoldsOptions {
  /**
   * Let private folders other than staging hold data, as a server that keeps an interrupted
   * upload's bytes for a later resume does. Staging must still be empty.
   */
  allowKept?: boolean;
}

/**
 * Asserts that a served root holds exactly `names` (top-level entries, in any order) besides
 * the server's own hidden `.ferry-*` folders; that the staging folder is there and empty; and,
 * unless `allowKept` is set, that every other private folder is empty too.
 */
export async function assertRootHolds(
  root: string,
  names: string[],
  options: RootHoldsOptions = {},
): Promise<void> {
  const entries = await listDir(root);
  const own = entries.filter((name) => name.startsWith(PRIVATE_PREFIX));
  const visible = entries.filter((name) => !name.startsWith(PRIVATE_PREFIX));
  assert.deepEqual(visible, [...names].sort(), `files in the root ${root}`);
  assert.ok(own.includes(STAGING_DIR), `${STAGING_DIR} missing from ${root}: ${entries}`);
  for (const folder of own) {
    if (folder !== STAGING_DIR && options.allowKept) continue;
    assert.deepEqual(await listDir(`${root}/${folder}`), [], `leftovers in ${folder}`);
  }
}

/** Options for {@link startServer}. */
export interface StartServerOptions {
  /**
   * Folder to serve. Default: `root` inside a fresh temporary folder, which is removed when the
   * server is stopped. A given root is left alone.
   */
  root?: string;
  /** `--host` to pass (default: the server's own default, 127.0.0.1). */
  host?: string;
  /** Further arguments for server.ts. */
  args?: string[];
  /**
   * Further Deno permission flags, after the usual `--allow-net --allow-read --allow-write`: a
   * `--deny-read=PATH`, say, to make part of the root unreadable even to root.
   */
  permissions?: string[];
  /** How long to wait for the banner, in milliseconds (default 20000). */
  startTimeoutMs?: number;
}

/** Options for {@link ServerProcess.waitForLog}. */
export interface WaitForLogOptions {
  /** Give up after this many milliseconds (default 10000). */
  timeoutMs?: number;
}

/**
 * A running server subprocess. Dispose it (`await using`) to stop it and remove its folder;
 * disposing throws if the server crashed or did not exit 0 on SIGTERM.
 */
export interface ServerProcess extends AsyncDisposable {
  /** Host to give the client: the address the server said it listens on, brackets removed. */
  host: string;
  /** Port the server said it listens on. */
  port: number;
  /** Absolute path of the served root, as given to the server. */
  root: string;
  /** The folder holding the root: for the default root, the temporary folder made for it. */
  base: string;
  /** Every stderr line so far, banner included; grows while the server runs. */
  lines: string[];
  /** Resolves with the first log line matching `pattern`, waiting for it within a deadline. */
  waitForLog(pattern: RegExp, options?: WaitForLogOptions): Promise<string>;
  /** Sends SIGTERM, awaits the exit and returns the exit code; safe to call twice. */
  stop(): Promise<number>;
}

/** Matches the banner: `ferry-server 0.1.0: serving /abs/root on 127.0.0.1:44767 (...)`. */
const BANNER = /serving (.+) on (?:\[([^\]]+)\]|([^\s:]+)):(\d+)/;

/**
 * Starts the real server (`server.ts 0 --root DIR`) as a subprocess and resolves once it has
 * printed where it listens. Its stderr keeps being collected into {@link ServerProcess.lines}.
 */
export async function startServer(options: StartServerOptions = {}): Promise<ServerProcess> {
  const ownedTemp = options.root === undefined ? await makeTempDir() : undefined;
  const root = options.root ?? `${ownedTemp!.path}/root`;
  const args = [
    "run",
    ...PROGRAM_PERMISSIONS,
    ...(options.permissions ?? []),
    "server.ts",
    "0",
    "--root",
    root,
    ...(options.host !== undefined ? ["--host", options.host] : []),
    ...(options.args ?? []),
  ];
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: REPO_ROOT,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();

  const lines: string[] = [];
  let banner: ((match: RegExpMatchArray | null) => void) | undefined;
  const bannerSeen = new Promise<RegExpMatchArray | null>((resolve) => banner = resolve);
  // Read stderr for the whole life of the process: the banner first, then one line per request.
  const reading = (async () => {
    let pending = "";
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      pending += chunk;
      const parts = pending.split("\n");
      pending = parts.pop()!;
      for (const line of parts) {
        lines.push(line);
        const match = line.match(BANNER);
        if (match) banner?.(match);
      }
    }
    if (pending !== "") lines.push(pending);
    banner?.(null);
  })();

  let exitCode: number | undefined;
  const stop = async (): Promise<number> => {
    if (exitCode === undefined) {
      try {
        child.kill("SIGTERM");
      } catch {
        // Already exited.
      }
      const status = await child.status;
      await reading;
      exitCode = status.code;
    }
    return exitCode;
  };

  const timeoutMs = options.startTimeoutMs ?? 20000;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const match = await Promise.race([
    bannerSeen,
    new Promise<null>((resolve) => timer = setTimeout(() => resolve(null), timeoutMs)),
  ]);
  clearTimeout(timer);
  if (!match) {
    await stop();
    await ownedTemp?.[Symbol.asyncDispose]();
    throw new Error(`Server did not start; its stderr was:\n${lines.join("\n")}`);
  }

  return {
    host: match[2] ?? match[3],
    port: Number(match[4]),
    root,
    base: dirname(root),
    lines,
    async waitForLog(pattern: RegExp, waitOptions: WaitForLogOptions = {}): Promise<string> {
      const found = () => lines.find((line) => pattern.test(line));
      await waitFor(`server log line ${pattern}`, () => found() !== undefined, {
        timeoutMs: waitOptions.timeoutMs,
      }).catch((error) => {
        throw new Error(`${error.message}; server log so far:\n${lines.join("\n")}`);
      });
      return found()!;
    },
    stop,
    async [Symbol.asyncDispose]() {
      const code = await stop();
      await ownedTemp?.[Symbol.asyncDispose]();
      // Whatever the test did, the server must never have crashed, and SIGTERM is a clean stop.
      if (code !== 0 || lines.some((line) => /error: Uncaught|panicked/.test(line))) {
        throw new Error(`Server ended badly (exit ${code}); its stderr was:\n${lines.join("\n")}`);
      }
    },
  };
}

/** Options for {@link runClient} and {@link runServer}. */
export interface RunOptions {
  /** Bytes to feed on stdin, which is then closed; without it stdin is empty (/dev/null). */
  stdin?: Uint8Array | string;
  /** Working folder (default: the repository). */
  cwd?: string;
}

/** What a finished program did. */
export interface RunResult {
  /** Exit code. */
  code: number;
  /** Everything written to stdout, as bytes (get to `-` writes file data there). */
  stdout: Uint8Array;
  /** Everything written to stderr, as text. */
  stderr: string;
}

/** Options for {@link spawnClient}. */
export interface SpawnOptions {
  /** Working folder (default: the repository). */
  cwd?: string;
}

function programCommand(
  script: string,
  args: string[],
  cwd: string | undefined,
  stdin: "piped" | "null",
): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", ...PROGRAM_PERMISSIONS, `${REPO_ROOT}${script}`, ...args],
    cwd: cwd ?? REPO_ROOT,
    stdin,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  });
}

async function runProgram(script: string, args: string[], options: RunOptions): Promise<RunResult> {
  const input = typeof options.stdin === "string"
    ? new TextEncoder().encode(options.stdin)
    : options.stdin;
  const child = programCommand(script, args, options.cwd, input ? "piped" : "null").spawn();
  // Feed stdin while the output is collected, or a large input and output could deadlock.
  const feeding = input
    ? (async () => {
      const writer = child.stdin.getWriter();
      try {
        await writer.write(input);
        await writer.close();
      } catch {
        // The program exited without reading everything (a refusal, say): that is its right.
        await writer.abort().catch(() => {});
      }
    })()
    : Promise.resolve();
  const [output] = await Promise.all([child.output(), feeding]);
  return { code: output.code, stdout: output.stdout, stderr: decoder.decode(output.stderr) };
}

/** Runs the real client (`client.ts ARGS`) to completion. */
export function runClient(args: string[], options: RunOptions = {}): Promise<RunResult> {
  return runProgram("client.ts", args, options);
}

/** Runs the real server (`server.ts ARGS`) to completion, for `--help`, `--version`, usage. */
export function runServer(args: string[], options: RunOptions = {}): Promise<RunResult> {
  return runProgram("server.ts", args, options);
}

/**
 * Starts the real client with stdin, stdout and stderr piped and returns the child process, for
 * tests that feed it slowly or kill it mid-transfer. The caller must close stdin (or kill it) and
 * await `output()` or `status`, and cancel the outputs it does not read.
 */
export function spawnClient(args: string[], options: SpawnOptions = {}): Deno.ChildProcess {
  return programCommand("client.ts", args, options.cwd, "piped").spawn();
}

/** The lines of a program's stderr, without the final empty one. */
export function stderrLines(result: RunResult): string[] {
  return result.stderr.split("\n").filter((line, i, all) => line !== "" || i < all.length - 1);
}
