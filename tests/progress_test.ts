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
  makeTempDir,
  REPO_ROOT,
  type ServerProcess,
  startServer,
  waitFor,
  writeRandomFile,
} from "./harness.ts";

const MiB = 1 << 20;
const decoder = new TextDecoder();
const PERMISSIONS = ["--allow-net", "--allow-read", "--allow-write"];
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
async function haveTmux(): Promise<boolean> {
  try {
    const out = await new Deno.Command("tmux", {
      args: ["-V"],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).output();
    return out.success;
  } catch {
    return false;
  }
}

const TMUX = await haveTmux();

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

/** Runs `client.ts HOST PORT ...args` with stderr piped (not a terminal) and a chosen NO_COLOR. */
async function client(server: ServerProcess, args: string[], noColor: boolean): Promise<Output> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...PERMISSIONS, "client.ts", server.host, String(server.port), ...args],
    cwd: REPO_ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    clearEnv: true,
    env: environment(noColor),
  }).output();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/**
 * Runs tmux on a private socket (a path in the test's temporary folder), so no other tmux
 * server is ever touched and nothing is left behind.
 */
async function tmux(socket: string, args: string[]): Promise<Output> {
  const output = await new Deno.Command("tmux", {
    args: ["-S", socket, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/** The pane's non-empty lines, as text, wrapped lines joined (-J). */
async function paneLines(socket: string, session: string): Promise<string[]> {
  const pane = await tmux(socket, ["capture-pane", "-p", "-J", "-t", session]);
  assert.equal(pane.code, 0, `tmux capture-pane failed: ${pane.stderr}`);
  return pane.stdout.split("\n").map((line) => line.trimEnd()).filter((line) => line !== "");
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
    const id = crypto.randomUUID().slice(0, 8);
    const socket = `${work.path}/tmux.sock`;
    const session = `ferry-progress-${id}`;
    const command = [
      `cd ${shellQuote(REPO_ROOT)} &&`,
      "NO_COLOR=1",
      shellQuote(Deno.execPath()),
      "run",
      ...PERMISSIONS,
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
    const started = await tmux(socket, [
      "new-session",
      "-d",
      "-s",
      session,
      "-x",
      "120",
      "-y",
      "20",
      command,
    ]);
    assert.equal(started.code, 0, `tmux new-session failed: ${started.stderr}`);
    try {
      // Live: several different percentages, each time on one line with bytes, rate and ETA.
      const seen = new Set<string>();
      let last: string[] = [];
      await waitFor("two different progress percentages on the pane", async () => {
        last = await paneLines(socket, session);
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
        last = await paneLines(socket, session);
        return last.some((line) => line.startsWith("exit="));
      }, { timeoutMs: 20000, intervalMs: 50 }).catch((error) => {
        throw new Error(`${error.message}; pane:\n${last.join("\n")}`);
      });
      assert.equal(last.length, 2, `only the report and the exit status:\n${last.join("\n")}`);
      assert.match(last[0], /^Uploaded .*pane\.bin.* as "pane\.bin": 6\.00 MiB in /);
      assert.equal(last[1], "exit=0");
      assert.ok(!last.some((line) => /ETA|%/.test(line)), "the progress line was cleared");
    } finally {
      await tmux(socket, ["kill-session", "-t", session]);
      await tmux(socket, ["kill-server"]);
    }
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
    const socket = `${work.path}/tmux.sock`;
    const session = `ferry-narrow-${crypto.randomUUID().slice(0, 8)}`;
    // No NO_COLOR: on a terminal the percentage is drawn bold.
    const command = [
      `cd ${shellQuote(work.path)} &&`,
      "unset NO_COLOR;",
      shellQuote(Deno.execPath()),
      "run",
      ...PERMISSIONS,
      shellQuote(`${REPO_ROOT}client.ts`),
      server.host,
      String(server.port),
      "put",
      shellQuote(name),
      "--limit-rate",
      "2M;",
      "sleep 30",
    ].join(" ");
    const started = await tmux(socket, [
      "new-session",
      "-d",
      "-s",
      session,
      "-x",
      "40",
      "-y",
      "10",
      command,
    ]);
    assert.equal(started.code, 0, `tmux new-session failed: ${started.stderr}`);
    try {
      let last: string[] = [];
      await waitFor("a progress line on the 40-column pane", async () => {
        const pane = await tmux(socket, ["capture-pane", "-p", "-e", "-t", session]);
        last = pane.stdout.split("\n").filter((line) => /ETA/.test(line));
        return last.length > 0 && !/Uploaded/.test(pane.stdout);
      }, { timeoutMs: 20000, intervalMs: 50 }).catch((error) => {
        throw new Error(`${error.message}; lines:\n${last.join("\n")}`);
      });
      const line = last[0];
      const plain = line.replace(withEsc(String.raw`ESC\[[0-9;]*m`, "g"), "").trimEnd();
      assert.ok(plain.length <= 39, `fits in 39 columns: ${JSON.stringify(plain)}`);
      assert.match(plain, /^a-\S*…\S*bin\s+\d{1,3}%/, `label shortened: ${plain}`);
      assert.match(
        plain,
        /[\d.]+ (?:KiB|MiB)\/s {2}ETA \d\d:\d\d$/,
        `rate and ETA whole: ${plain}`,
      );
      assert.match(line, withEsc(String.raw`ESC\[1m\s*\d{1,3}%`), `bold: ${JSON.stringify(line)}`);
    } finally {
      await tmux(socket, ["kill-session", "-t", session]);
      await tmux(socket, ["kill-server"]);
    }
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
      ...PERMISSIONS,
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
