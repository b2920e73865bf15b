/**
 * Integration-test harness: runs the real ferry server and client as subprocesses, the way a
 * user would, against throw-away folders, and checks what they did. Raw-protocol helpers (byte
 * and frame builders, raw connections, fake servers) are in tests/wire.ts instead.
 *
 * - {@link startServer} spawns `server.ts` on port 0 with a temporary root, learns the port from
 *   the banner it prints on stderr, keeps collecting its log lines in the background, and stops
 *   it with SIGTERM. Use it with `await using` so the process and its folder are always cleaned.
 *   {@link spawnServer} and {@link collectLines} are its parts, for tests that need the process.
 * - {@link runClient} runs `client.ts` to completion and returns its exit code and output, and
 *   {@link ferry} runs it against a server's host and port; {@link spawnClient} starts one for
 *   tests that must feed or kill it mid-way. {@link runCommand} runs any other program (tmux,
 *   openssl, sh), and {@link commandWorks} probes whether a tool can run here at all.
 * - Result checks, the same for every test file: {@link assertSuccess}, {@link assertFailure}
 *   (exit 1, one line), {@link assertUsageError} (exit 2, one line with the --help hint),
 *   {@link assertNoStackTrace} and {@link assertOneStderrLine}.
 * - {@link assertRootHolds}, {@link storedFiles} and {@link waitForEmptyStaging} check what a
 *   served root holds, the server's private folders included, and {@link waitForStagingData}
 *   whether an upload is under way; {@link makeTempDir}, {@link closedPort},
 *   {@link waitFor}, {@link randomBytes}, {@link writeRandomFile}, {@link touchFiles} and
 *   {@link filesEqual} are the small utilities the tests share.
 *
 * `deno task test` runs the test files in parallel, each in its own process (tests within a file
 * still run one after another). So a test owns nothing fixed: folders come from
 * {@link makeTempDir}, servers listen on port 0, a port that must refuse is {@link closedPort},
 * and the working folder and environment of this process stay as they are (give a child its
 * `cwd` and `env` instead). Other files' processes load the CPU meanwhile: wait on a condition
 * with {@link waitFor}, and give bounds on time room for a busy machine.
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

/** The server's hidden folder of interrupted uploads kept for `put --resume`. */
export const RESUME_DIR = ".ferry-resume";

/** Prefix of the hidden folders the server keeps for itself at the top of its root. */
const PRIVATE_PREFIX = ".ferry-";

/** Permission flags the programs are run with: what a user's `deno run` line would give. */
export const PROGRAM_PERMISSIONS: readonly string[] = [
  "--allow-net",
  "--allow-read",
  "--allow-write",
  "--allow-env=HOME,XDG_CONFIG_HOME,XDG_STATE_HOME,APPDATA,LOCALAPPDATA",
  "--allow-sys=hostname,networkInterfaces",
];

/**
 * Where the programs look for the user's folders (known servers, the server's own TLS key) unless
 * a test says otherwise: under a regular file, so a folder there can be neither read nor made, and
 * no test reads or writes the user's own.
 */
const NO_USER_DIRS: Readonly<Record<string, string>> = {
  XDG_CONFIG_HOME: `${REPO_ROOT}deno.json/no-config`,
  XDG_STATE_HOME: `${REPO_ROOT}deno.json/no-state`,
};

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

/**
 * A file holding `contents` (a token for `--token-file`, say), alone in a fresh temporary folder
 * that disposing removes. `path` is the file's.
 */
export async function makeTempFile(contents: string): Promise<TempDir> {
  const dir = await makeTempDir();
  const path = `${dir.path}/file`;
  try {
    await Deno.writeTextFile(path, contents);
  } catch (error) {
    await dir[Symbol.asyncDispose]();
    throw error;
  }
  return { path, [Symbol.asyncDispose]: () => dir[Symbol.asyncDispose]() };
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

/**
 * A loopback TCP port that nothing listens on, for tests of a refused connection. It is picked
 * below 32768, where Linux starts handing out ports for port 0 (49152 elsewhere): a port just
 * closed could be taken meanwhile by a server that a test file running alongside starts, this
 * one is not. Checked to refuse a connection before it is returned.
 */
export async function closedPort(): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 12768);
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
    } catch (error) {
      if (error instanceof Deno.errors.ConnectionRefused) return port;
      throw error;
    }
  }
  throw new Error("No closed port found on 127.0.0.1 between 20000 and 32767");
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

/**
 * Makes empty files named `names` (relative to `dir`, whose folders must exist) with one
 * `xargs touch` working from `dir`: for thousands of files on a deep path, where this process's
 * `--allow-write` check would read every folder of each file's absolute path as a possible link
 * (twice), and touch opens the names relative to its working folder.
 */
export async function touchFiles(dir: string, names: string[]): Promise<void> {
  const child = new Deno.Command("xargs", {
    args: ["-0", "touch", "--"],
    cwd: dir,
    stdin: "piped",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(names.join("\0")));
  await writer.close();
  const output = await child.output();
  assert.equal(output.code, 0, `xargs touch in ${dir}: ${decoder.decode(output.stderr)}`);
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

/** Regular files under `root`, `/`-separated and sorted, skipping the server's own `.ferry-*` folders. */
export async function storedFiles(root: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (dir: string, prefix: string) => {
    for await (const entry of Deno.readDir(dir)) {
      if (prefix === "" && entry.name.startsWith(PRIVATE_PREFIX)) continue;
      if (entry.isDirectory) await walk(`${dir}/${entry.name}`, `${prefix}${entry.name}/`);
      else found.push(prefix + entry.name);
    }
  };
  await walk(root, "");
  return found.sort();
}

/** Options for {@link waitForEmptyStaging}. */
export interface EmptyStagingOptions extends WaitOptions {
  /** What the test was doing, for the message if the deadline passes. */
  what?: string;
}

/**
 * Waits (a bounded poll) for the staging folder of the server serving `root` to be empty, as it
 * must be once the server has noticed an upload ended, however it ended.
 */
export async function waitForEmptyStaging(
  root: string,
  options: EmptyStagingOptions = {},
): Promise<void> {
  const { what, ...wait } = options;
  const staging = `${root}/${STAGING_DIR}`;
  await waitFor(
    `${what ? `${what}: ` : ""}the staging folder to empty`,
    async () => (await listDir(staging)).length === 0,
    wait,
  );
}

/**
 * Waits (a bounded poll) for a staging file of at least `size` bytes in the server serving
 * `root`: proof that an upload is really under way and that the server has that much of it.
 */
export async function waitForStagingData(root: string, size: number): Promise<void> {
  const staging = `${root}/${STAGING_DIR}`;
  await waitFor(`a staging file of ${size} bytes or more`, async () => {
    for (const name of await listDir(staging)) {
      const info = await Deno.stat(`${staging}/${name}`).catch(() => null);
      if (info && info.size >= size) return true;
    }
    return false;
  }, { timeoutMs: 20000 });
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

/** Options for {@link spawnServer}. */
export interface SpawnServerOptions {
  /** Further Deno permission flags, after the usual `--allow-net --allow-read --allow-write`. */
  permissions?: string[];
  /** Environment variables to set on top of this process's (XDG_STATE_HOME, say). */
  env?: Record<string, string>;
}

/**
 * Spawns the real server (`server.ts ARGS`) from the repository with stdin and stdout closed and
 * stderr piped, and returns the child process: the caller reads stderr (see
 * {@link collectLines}) and stops it. {@link startServer} is the usual way in; this is for tests
 * that need the process itself (its pid, or signals other than SIGTERM).
 */
export function spawnServer(args: string[], options: SpawnServerOptions = {}): Deno.ChildProcess {
  return spawnServing(
    Deno.execPath(),
    ["run", ...PROGRAM_PERMISSIONS, ...(options.permissions ?? []), "server.ts", ...args],
    { ...NO_USER_DIRS, ...options.env },
  );
}

/**
 * Spawns `program ARGS` as a server is run here: from the repository, stdin and stdout closed,
 * stderr piped (read it with {@link collectLines}), NO_COLOR and `env` set on top of this
 * process's environment. For a server started another way than {@link spawnServer}: through
 * `deno task`, a shell, or a wrapper.
 */
export function spawnServing(
  program: string,
  args: string[],
  env: Record<string, string> = {},
): Deno.ChildProcess {
  return new Deno.Command(program, {
    args,
    cwd: REPO_ROOT,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1", ...env },
  }).spawn();
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
  /** Environment variables to set on top of this process's. */
  env?: Record<string, string>;
  /** How long to wait for the banner, in milliseconds (default 20000). */
  startTimeoutMs?: number;
  /**
   * An uncaught error the test causes on purpose (a disk thread it has die), whose line is then
   * no sign that the server crashed (default: none; any such line fails the test).
   */
  expectedUncaught?: RegExp;
}

/** A server with its HTTP side on, from {@link startHttp}. */
export interface HttpServer {
  /** The server; dispose it to stop it. */
  server: ServerProcess;
  /** Where the HTTP side answers, ending in a slash: `http://127.0.0.1:PORT/`. */
  base: string;
}

/** Starts the server with `--http 127.0.0.1:0` and `args`, once its HTTP side answers. */
export async function startHttp(args: string[] = []): Promise<HttpServer> {
  const server = await startServer({ args: ["--http", "127.0.0.1:0", ...args] });
  const line = await server.waitForLog(/HTTP on https?:\/\/\S+\//);
  return { server, base: /HTTP on (https?:\/\/\S+\/)/.exec(line)![1] };
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
  /** Process id, for tests that freeze the server (SIGSTOP) and thaw it (SIGCONT). */
  pid: number;
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

/** Options for {@link CollectedLines.firstMatch}. */
export interface FirstMatchOptions {
  /** Give up (resolve null) after this many milliseconds (default 20000). */
  timeoutMs?: number;
}

/** The lines of a stream being read in the background, see {@link collectLines}. */
export interface CollectedLines {
  /** Every whole line so far, without its newline; grows while the stream is read. */
  lines: string[];
  /** Settles once the stream has ended (a last unterminated line is then added too). */
  done: Promise<void>;
  /**
   * Resolves with the match of the first line, already read or still to come, that matches
   * `pattern`; or with null once the stream has ended, or the deadline has passed, without one.
   */
  firstMatch(pattern: RegExp, options?: FirstMatchOptions): Promise<RegExpMatchArray | null>;
}

/**
 * Reads a program's output (stderr, say) in the background for as long as it runs, splitting it
 * into lines as they arrive.
 */
export function collectLines(stream: ReadableStream<Uint8Array>): CollectedLines {
  const lines: string[] = [];
  let ended = false;
  const waiters = new Set<() => void>();
  const wake = () => [...waiters].forEach((check) => check());
  const done = (async () => {
    try {
      let pending = "";
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
        pending += chunk;
        const parts = pending.split("\n");
        pending = parts.pop()!;
        lines.push(...parts);
        if (parts.length > 0) wake();
      }
      if (pending !== "") lines.push(pending);
    } finally {
      ended = true;
      wake();
    }
  })();
  const firstMatch = (pattern: RegExp, options: FirstMatchOptions = {}) =>
    new Promise<RegExpMatchArray | null>((resolve) => {
      const finish = (match: RegExpMatchArray | null) => {
        clearTimeout(timer);
        waiters.delete(check);
        resolve(match);
      };
      const check = () => {
        const match = lines.map((line) => line.match(pattern)).find((m) => m);
        if (match) finish(match);
        else if (ended) finish(null);
      };
      const timer = setTimeout(() => finish(null), options.timeoutMs ?? 20000);
      waiters.add(check);
      check();
    });
  return { lines, done, firstMatch };
}

/** Matches the banner: `ferry-server 0.1.0: serving /abs/root on 127.0.0.1:44767 (...)`. */
export const SERVER_BANNER = /serving (.+) on (?:\[([^\]]+)\]|([^\s:]+)):(\d+)/;

/**
 * Starts the real server (`server.ts 0 --root DIR`) as a subprocess and resolves once it has
 * printed where it listens. Its stderr keeps being collected into {@link ServerProcess.lines}.
 */
export async function startServer(options: StartServerOptions = {}): Promise<ServerProcess> {
  const ownedTemp = options.root === undefined ? await makeTempDir() : undefined;
  const root = options.root ?? `${ownedTemp!.path}/root`;
  const child = spawnServer([
    "0",
    "--root",
    root,
    ...(options.host !== undefined ? ["--host", options.host] : []),
    ...(options.args ?? []),
  ], { permissions: options.permissions, env: options.env });

  // Read stderr for the whole life of the process: the banner first, then one line per request.
  const { lines, done: reading, firstMatch } = collectLines(child.stderr);

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

  const match = await firstMatch(SERVER_BANNER, { timeoutMs: options.startTimeoutMs ?? 20000 });
  if (!match) {
    await stop();
    await ownedTemp?.[Symbol.asyncDispose]();
    throw new Error(`Server did not start; its stderr was:\n${lines.join("\n")}`);
  }

  return {
    host: match[2] ?? match[3],
    port: Number(match[4]),
    pid: child.pid,
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
      const crash = (line: string) =>
        /error: Uncaught|panicked/.test(line) && !options.expectedUncaught?.test(line);
      if (code !== 0 || lines.some(crash)) {
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
  /** Environment variables to set on top of this process's (HOME, XDG_CONFIG_HOME...). */
  env?: Record<string, string>;
  /** Further Deno permission flags, after the usual ones (`--allow-env`, say). */
  permissions?: string[];
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
  options: RunOptions,
  stdin: "piped" | "null",
): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...PROGRAM_PERMISSIONS,
      ...(options.permissions ?? []),
      `${REPO_ROOT}${script}`,
      ...args,
    ],
    cwd: options.cwd ?? REPO_ROOT,
    stdin,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", ...NO_USER_DIRS, ...options.env },
  });
}

async function runProgram(script: string, args: string[], options: RunOptions): Promise<RunResult> {
  const input = typeof options.stdin === "string"
    ? new TextEncoder().encode(options.stdin)
    : options.stdin;
  const child = programCommand(script, args, options, input ? "piped" : "null").spawn();
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
  return resultOf(output);
}

/** A finished child's output (`Deno.Command` or a spawned child) as a {@link RunResult}. */
export function resultOf(output: Deno.CommandOutput): RunResult {
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
  return programCommand("client.ts", args, options, "piped").spawn();
}

/** Options for {@link runCommand}. */
export interface CommandOptions {
  /** Working folder (default: this process's). */
  cwd?: string;
  /** Environment variables to set (on top of this process's, unless `clearEnv`). */
  env?: Record<string, string>;
  /** Start from an empty environment: only `env` is passed on. */
  clearEnv?: boolean;
}

/**
 * Runs any program (`tmux`, `openssl`, `sh`, ...) to completion with stdin empty and returns its
 * exit code and output. Throws if it cannot be started at all (not installed, say).
 */
export async function runCommand(
  program: string,
  args: string[],
  options: CommandOptions = {},
): Promise<RunResult> {
  const output = await new Deno.Command(program, {
    args,
    cwd: options.cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: options.env,
    clearEnv: options.clearEnv,
  }).output();
  return resultOf(output);
}

/**
 * Runs `script` with `deno eval` from the repository root (so it can import `./lib/...`) under
 * the given V8 flags, asserts that it exits 0, and returns the JSON it printed: for checking lib
 * code in a runtime that lacks something (SSE4.1, memory) this process has.
 */
export async function evalUnderV8Flags(v8Flags: string, script: string): Promise<unknown> {
  const result = await runCommand(Deno.execPath(), ["eval", `--v8-flags=${v8Flags}`, script], {
    cwd: REPO_ROOT,
  });
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(decoder.decode(result.stdout));
}

/**
 * Whether `program args` can be run here and exits 0: the probe that decides whether a test that
 * needs a tool (`tmux -V`, say) runs or is skipped.
 */
export async function commandWorks(program: string, args: string[]): Promise<boolean> {
  try {
    return (await runCommand(program, args)).code === 0;
  } catch {
    return false;
  }
}

/** The lines of a program's stderr, without the final empty one. */
export function stderrLines(result: RunResult): string[] {
  return result.stderr.split("\n").filter((line, i, all) => line !== "" || i < all.length - 1);
}

/** Where a client connects: a ServerProcess, a fake or seed server, a relay. */
export interface Endpoint {
  /** Host name or address, without brackets. */
  host: string;
  /** TCP port. */
  port: number;
}

/** Runs the real client against `endpoint`: `client.ts HOST PORT ...args`. */
export function ferry(
  endpoint: Endpoint,
  args: string[],
  options: RunOptions = {},
): Promise<RunResult> {
  return runClient([endpoint.host, String(endpoint.port), ...args], options);
}

/**
 * A stack trace, an uncaught-error report or a Python traceback on stderr means a failure escaped
 * the program's own handling. `what` names the run in the message.
 */
export function assertNoStackTrace(result: RunResult, what = "stderr"): void {
  assert.doesNotMatch(result.stderr, /^\s+at /m, `${what}: stack trace:\n${result.stderr}`);
  assert.doesNotMatch(
    result.stderr,
    /error: Uncaught|Traceback/,
    `${what}: uncaught error:\n${result.stderr}`,
  );
}

/** The program exited 0 without a stack trace; on failure the message shows its stderr. */
export function assertSuccess(result: RunResult, what: string): void {
  assert.equal(result.code, 0, `${what} failed (exit ${result.code}):\n${result.stderr}`);
  assertNoStackTrace(result, what);
}

/** Options for {@link assertOneStderrLine}, {@link assertFailure} and {@link assertUsageError}. */
export interface OneLineOptions {
  /** What was run, for the messages. */
  what: string;
}

/** Asserts that stderr is exactly one line and that it matches `pattern`; returns the line. */
export function assertOneStderrLine(
  result: RunResult,
  pattern: RegExp,
  options: OneLineOptions,
): string {
  const { what } = options;
  const lines = stderrLines(result);
  assert.equal(lines.length, 1, `${what}: expected one line on stderr, got:\n${result.stderr}`);
  assert.match(lines[0], pattern, `${what}: ${lines[0]}`);
  return lines[0];
}

/** Options for {@link assertFailure}. */
export interface FailureOptions extends OneLineOptions {
  /**
   * Accept output on stdout, for a download to stdout that fails part-way (bytes already written
   * to a pipe cannot be taken back). Off by default: nothing belongs on stdout.
   */
  allowStdout?: boolean;
}

/** Exit 1, no stack trace, exactly one line on stderr matching `pattern`, nothing on stdout. */
export function assertFailure(result: RunResult, pattern: RegExp, options: FailureOptions): void {
  const { what } = options;
  assert.equal(result.code, 1, `${what}: expected exit 1, got ${result.code}:\n${result.stderr}`);
  assertNoStackTrace(result, what);
  assertOneStderrLine(result, pattern, options);
  if (!options.allowStdout) {
    assert.equal(result.stdout.length, 0, `${what}: nothing belongs on stdout`);
  }
}

/** Options for {@link assertUsageError}. */
export interface UsageErrorOptions extends OneLineOptions {
  /** What the message must say, besides the program's name and the hint. */
  pattern?: RegExp;
}

/**
 * A usage error of `program` (`ferry` or `ferry-server`): exit 2, no stack trace, nothing on
 * stdout, and exactly one line on stderr, `PROGRAM: message (try 'PROGRAM --help')`.
 */
export function assertUsageError(
  result: RunResult,
  program: string,
  options: UsageErrorOptions,
): void {
  const { what } = options;
  assert.equal(result.code, 2, `${what}: expected exit 2, got ${result.code}:\n${result.stderr}`);
  assertNoStackTrace(result, what);
  const line = assertOneStderrLine(result, new RegExp(`^${program}: \\S`), options);
  if (options.pattern) assert.match(line, options.pattern, what);
  assert.match(line, new RegExp(` \\(try '${program} --help'\\)$`), what);
  assert.equal(result.stdout.length, 0, `${what}: nothing belongs on stdout`);
}
