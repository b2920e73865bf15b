/**
 * The progress line, for real: the client runs under tmux (a real terminal) with a rate limit
 * and the pane is read while the upload goes on, at 120 columns and at 40 (where a long name
 * gives way to the numbers, and the percentage is bold); then the same upload with stderr going
 * to a file (no progress at all, only the final report), with `--progress` (forced on, and never
 * coloured outside a terminal), with `--quiet` (silent), and with NO_COLOR.
 *
 * The tmux tests are skipped only when tmux cannot be run on this machine.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  commandWorks,
  makeTempDir,
  PROGRAM_PERMISSIONS,
  REPO_ROOT,
  runCommand,
  type RunResult,
  type ServerProcess,
  startServer,
  waitFor,
  writeRandomFile,
} from "./harness.ts";

const MiB = 1 << 20;
const decoder = new TextDecoder();
/** The escape character, kept out of regular expression literals. */
const ESC = String.fromCharCode(27);
/** What each redraw and the final clear start with: carriage return, then clear the line. */
const CLEAR = `\r${ESC}[2K`;
/** Builds a regular expression in which `ESC` stands for the escape character. */
function withEsc(source: string, flags = ""): RegExp {
  return new RegExp(source.replaceAll("ESC", ESC), flags);
}
/** A percentage as the progress line draws it, e.g. ` 37%`. */
const PERCENT = /\s\d{1,3}%/;

/** Whether `tmux` can be run here. */
const TMUX = await commandWorks("tmux", ["-V"]);

/** Quotes a word for sh. */
function shellQuote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/** The environment of this process, with NO_COLOR set to "1" or removed. */
function environment(noColor: boolean): Record<string, string> {
  const env = Deno.env.toObject();
  delete env.NO_COLOR;
  if (noColor) env.NO_COLOR = "1";
  return env;
}

interface Output {
  code: number;
  stdout: string;
  stderr: string;
}

/** A finished program's output, as text. */
function asText(result: RunResult): Output {
  return { code: result.code, stdout: decoder.decode(result.stdout), stderr: result.stderr };
}

/** Runs `client.ts HOST PORT ...args` with stderr piped (not a terminal) and a chosen NO_COLOR. */
async function client(server: ServerProcess, args: string[], noColor: boolean): Promise<Output> {
  const clientArgs = ["client.ts", server.host, String(server.port), ...args];
  return asText(
    await runCommand(Deno.execPath(), ["run", ...PROGRAM_PERMISSIONS, ...clientArgs], {
      cwd: REPO_ROOT,
      clearEnv: true,
      env: environment(noColor),
    }),
  );
}

/** The size of a {@link startTerminal} terminal, in characters. */
interface TerminalSize {
  columns: number;
  rows: number;
}

/** A real terminal: a detached tmux session running one shell command. */
interface Terminal extends AsyncDisposable {
  /** The screen as text (`capture-pane -p`), with any further capture-pane flags. */
  capture(flags: string[]): Promise<string>;
  /** The screen's non-empty lines, as text, wrapped lines joined (-J). */
  lines(): Promise<string[]>;
}

/**
 * Starts `command` in a detached tmux session of the given size. tmux runs on a private socket
 * (a path in `dir`, the test's temporary folder), so no other tmux server is ever touched;
 * disposing the terminal kills the session and its server, so nothing is left behind.
 */
async function startTerminal(dir: string, command: string, size: TerminalSize): Promise<Terminal> {
  const socket = `${dir}/tmux.sock`;
  const session = `ferry-progress-${crypto.randomUUID().slice(0, 8)}`;
  const tmux = async (args: string[]) => asText(await runCommand("tmux", ["-S", socket, ...args]));
  const [columns, rows] = [String(size.columns), String(size.rows)];
  const started = await tmux([
    "new-session",
    "-d",
    "-s",
    session,
    "-x",
    columns,
    "-y",
    rows,
    command,
  ]);
  assert.equal(started.code, 0, `tmux new-session failed: ${started.stderr}`);
  return {
    async capture(flags: string[]): Promise<string> {
      return (await tmux(["capture-pane", "-p", ...flags, "-t", session])).stdout;
    },
    async lines(): Promise<string[]> {
      const pane = await tmux(["capture-pane", "-p", "-J", "-t", session]);
      assert.equal(pane.code, 0, `tmux capture-pane failed: ${pane.stderr}`);
      return pane.stdout.split("\n").map((line) => line.trimEnd()).filter((line) => line !== "");
    },
    async [Symbol.asyncDispose]() {
      await tmux(["kill-session", "-t", session]);
      await tmux(["kill-server"]);
    },
  };
}

/** Escape sequences in `text`, each as it appears. */
function escapes(text: string): string[] {
  return text.match(withEsc(String.raw`ESC\[[0-9;?]*[A-Za-z]`, "g")) ?? [];
}

Deno.test({
  name: "on a terminal (tmux) the progress line is live, redrawn in place and cleared at the end",
  ignore: !TMUX,
  async fn() {
    await using server = await startServer();
    await using work = await makeTempDir();
    const file = `${work.path}/pane.bin`;
    // 6 MiB at 2 MiB/s: three seconds of progress to read.
    await writeRandomFile(file, 6 * MiB);
    const command = [
      `cd ${shellQuote(REPO_ROOT)} &&`,
      "NO_COLOR=1",
      shellQuote(Deno.execPath()),
      "run",
      ...PROGRAM_PERMISSIONS,
      "client.ts",
      server.host,
      String(server.port),
      "put",
      shellQuote(file),
      "--limit-rate",
      "2M;",
      'echo "exit=$?";',
      "sleep 30",
    ].join(" ");
    await using terminal = await startTerminal(work.path, command, { columns: 120, rows: 20 });
    // Live: several different percentages, each time on one line with bytes, rate and ETA.
    const seen = new Set<string>();
    let last: string[] = [];
    await waitFor("two different progress percentages on the pane", async () => {
      last = await terminal.lines();
      const progress = last.filter((line) => /ETA/.test(line));
      if (progress.length === 0) return false;
      assert.equal(
        progress.length,
        1,
        `one progress line, redrawn in place:\n${last.join("\n")}`,
      );
      const line = progress[0];
      if (!/Uploaded/.test(last.join("\n"))) {
        assert.match(line, /pane\.bin/, "the line names the file");
        assert.match(line, PERCENT, `a percentage: ${line}`);
        assert.match(line, /\d (?:KiB|MiB) \/ 6\.00 MiB/, `bytes of the total: ${line}`);
        assert.match(line, /MiB\/s/, `a rate: ${line}`);
        assert.match(line, /ETA \d\d:\d\d/, `an ETA: ${line}`);
        assert.ok(line.length < 120, "the line fits the terminal");
        seen.add(PERCENT.exec(line)![0].trim());
      }
      return seen.size >= 2;
    }, { timeoutMs: 20000, intervalMs: 50 }).catch((error) => {
      throw new Error(`${error.message}; pane:\n${last.join("\n")}`);
    });

    // At the end the progress line is gone: the report took its place, nothing else is left.
    await waitFor("the client to finish", async () => {
      last = await terminal.lines();
      return last.some((line) => line.startsWith("exit="));
    }, { timeoutMs: 20000, intervalMs: 50 }).catch((error) => {
      throw new Error(`${error.message}; pane:\n${last.join("\n")}`);
    });
    assert.equal(last.length, 2, `only the report and the exit status:\n${last.join("\n")}`);
    assert.match(last[0], /^Uploaded .*pane\.bin.* as "pane\.bin": 6\.00 MiB in /);
    assert.equal(last[1], "exit=0");
    assert.ok(!last.some((line) => /ETA|%/.test(line)), "the progress line was cleared");
  },
});

Deno.test({
  name: "on a 40-column terminal the label gives way to the numbers, and the percentage is bold",
  ignore: !TMUX,
  async fn() {
    await using server = await startServer();
    await using work = await makeTempDir();
    const name = "a-rather-long-file-name-that-cannot-fit-forty-columns.bin";
    await writeRandomFile(`${work.path}/${name}`, 6 * MiB);
    // No NO_COLOR: on a terminal the percentage is drawn bold.
    const command = [
      `cd ${shellQuote(work.path)} &&`,
      "unset NO_COLOR;",
      shellQuote(Deno.execPath()),
      "run",
      ...PROGRAM_PERMISSIONS,
      shellQuote(`${REPO_ROOT}client.ts`),
      server.host,
      String(server.port),
      "put",
      shellQuote(name),
      "--limit-rate",
      "2M;",
      "sleep 30",
    ].join(" ");
    await using terminal = await startTerminal(work.path, command, { columns: 40, rows: 10 });
    let last: string[] = [];
    await waitFor("a progress line on the 40-column pane", async () => {
      const pane = await terminal.capture(["-e"]);
      last = pane.split("\n").filter((line) => /ETA/.test(line));
      return last.length > 0 && !/Uploaded/.test(pane);
    }, { timeoutMs: 20000, intervalMs: 50 }).catch((error) => {
      throw new Error(`${error.message}; lines:\n${last.join("\n")}`);
    });
    const line = last[0];
    const plain = line.replace(withEsc(String.raw`ESC\[[0-9;]*m`, "g"), "").trimEnd();
    assert.ok(plain.length <= 39, `fits in 39 columns: ${JSON.stringify(plain)}`);
    // The name keeps its start and end around the ellipsis. How many characters of each fit
    // depends on how wide the rate is ("1.9 MiB/s", or "657.7 KiB/s" on a busy machine).
    assert.match(plain, /^a-\S*…\S+\s+\d{1,3}%/, `label shortened: ${plain}`);
    const [head, tail] = plain.split(/\s/)[0].split("…");
    assert.ok(name.startsWith(head) && name.endsWith(tail), `label shortened: ${plain}`);
    assert.match(
      plain,
      /[\d.]+ (?:KiB|MiB)\/s {2}ETA \d\d:\d\d$/,
      `rate and ETA whole: ${plain}`,
    );
    assert.match(line, withEsc(String.raw`ESC\[1m\s*\d{1,3}%`), `bold: ${JSON.stringify(line)}`);
  },
});

Deno.test("with stderr to a file there is no progress at all, only the final report", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  await writeRandomFile(`${work.path}/file.bin`, 2 * MiB);
  const log = `${work.path}/stderr.txt`;
  // sh does the redirection, as a user's `2> FILE` would.
  const output = await new Deno.Command("sh", {
    args: [
      "-c",
      'log="$1"; shift; exec "$@" 2>"$log"',
      "sh",
      log,
      Deno.execPath(),
      "run",
      ...PROGRAM_PERMISSIONS,
      `${REPO_ROOT}client.ts`,
      server.host,
      String(server.port),
      "put",
      `${work.path}/file.bin`,
      "--limit-rate",
      "4M",
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    clearEnv: true,
    env: environment(false),
  }).output();
  const stderr = await Deno.readTextFile(log);
  assert.equal(output.code, 0, `put failed: ${stderr}${decoder.decode(output.stderr)}`);
  assert.equal(output.stdout.length, 0, "nothing on stdout");
  assert.ok(!stderr.includes("\r"), `no carriage return: ${JSON.stringify(stderr)}`);
  assert.ok(!stderr.includes(ESC), `no escape sequence: ${JSON.stringify(stderr)}`);
  assert.ok(!stderr.includes("%"), `no percentage: ${JSON.stringify(stderr)}`);
  assert.ok(!stderr.includes("ETA"), `no ETA: ${JSON.stringify(stderr)}`);
  const lines = stderr.split("\n");
  assert.equal(lines.length, 2, `one line and its newline: ${JSON.stringify(stderr)}`);
  assert.match(
    lines[0],
    /^Uploaded .*file\.bin as "file\.bin": 2\.00 MiB in .*xxh128:[0-9a-f]{32}$/,
  );
  assert.equal(lines[1], "");
});

Deno.test("--progress forces the line when stderr is not a terminal; NO_COLOR leaves no colour", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  await writeRandomFile(`${work.path}/forced.bin`, 2 * MiB);

  const put = await client(
    server,
    ["put", `${work.path}/forced.bin`, "--progress", "--limit-rate", "4M"],
    true,
  );
  assert.equal(put.code, 0, `put --progress failed: ${put.stderr}`);
  assert.ok(put.stderr.includes("\r"), `redrawn with \\r: ${JSON.stringify(put.stderr)}`);
  assert.match(put.stderr, /ETA/);
  assert.match(put.stderr, PERCENT);
  assert.match(put.stderr, /MiB\/s/);
  // NO_COLOR: the only escape sequence is the clear-line one.
  assert.ok(put.stderr.includes(CLEAR), "the line is cleared before each redraw");
  assert.deepEqual(
    [...new Set(escapes(put.stderr))],
    [`${ESC}[2K`],
    `no colour with NO_COLOR: ${JSON.stringify(put.stderr)}`,
  );
  // Cleared at the end: the report starts on a cleared line and nothing follows it.
  const tail = put.stderr.slice(put.stderr.lastIndexOf("\r"));
  assert.ok(tail.startsWith(CLEAR), JSON.stringify(tail));
  assert.match(tail.slice(CLEAR.length), /^Uploaded .*forced\.bin[^\r]*\n$/, JSON.stringify(tail));

  // Downloads draw the same line.
  const get = await client(
    server,
    ["get", "forced.bin", `${work.path}/back.bin`, "--progress", "--limit-rate", "4M"],
    true,
  );
  assert.equal(get.code, 0, `get --progress failed: ${get.stderr}`);
  assert.match(get.stderr, withEsc(String.raw`\rESC\[2Kforced\.bin\s+\d{1,3}%.*ETA`));
  assert.match(get.stderr, withEsc(String.raw`\rESC\[2KDownloaded [^\r]*\n$`));
});

Deno.test("--progress into a pipe draws no colour even without NO_COLOR: bold is for terminals", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  await writeRandomFile(`${work.path}/plain.bin`, 2 * MiB);

  const put = await client(
    server,
    ["put", `${work.path}/plain.bin`, "--progress", "--limit-rate", "4M"],
    false,
  );
  assert.equal(put.code, 0, `put --progress failed: ${put.stderr}`);
  assert.match(put.stderr, PERCENT, "the line is drawn");
  // A log file gets the line (it was asked for), but no escape beyond clearing the line.
  assert.deepEqual(
    [...new Set(escapes(put.stderr))],
    [`${ESC}[2K`],
    `no colour outside a terminal: ${JSON.stringify(put.stderr)}`,
  );
});

Deno.test("--quiet silences the progress line even with --progress", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  await writeRandomFile(`${work.path}/quiet.bin`, 2 * MiB);

  const put = await client(
    server,
    ["put", `${work.path}/quiet.bin`, "--progress", "--quiet", "--limit-rate", "4M"],
    false,
  );
  assert.equal(put.code, 0, `put --quiet failed: ${put.stderr}`);
  assert.equal(put.stderr, "", "nothing at all on stderr");
  assert.equal(put.stdout, "", "nothing on stdout");
  assert.equal((await Deno.stat(`${server.root}/quiet.bin`)).size, 2 * MiB);
});
