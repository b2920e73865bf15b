/**
 * Integration tests of what the programs say when something is off, and of the small results that
 * used to be wrong: `put --resume` of a changed file, the `--max-size` wording, `--port 0`, a root
 * that cannot be used or made, mput/mget naming a file once, the kept `.part` note after its
 * reason, a client that reached an HTTP server, a get whose default LOCAL is a folder, and names
 * in the root that no client may ask for (control characters, bytes that are not UTF-8).
 *
 * @module
 */

import assert from "node:assert/strict";
import { encodeControl, FrameType } from "../lib/frames.ts";
import {
  assertFailure,
  assertSuccess,
  assertUsageError,
  collectLines,
  commandWorks,
  ferry,
  filesEqual,
  listDir,
  makeTempDir,
  PROGRAM_PERMISSIONS,
  randomBytes,
  runCommand,
  runServer,
  SERVER_BANNER,
  type ServerProcess,
  spawnServing,
  startServer,
  stderrLines,
  waitFor,
} from "./harness.ts";
import { dataFrame, Wire, withFakeServer } from "./wire.ts";
import { createByBytes } from "./tree_helpers.ts";
import { SPLIT_NAMES } from "../lib/disk_pool.ts";

const MiB = 1 << 20;
const decoder = new TextDecoder();

/** Escapes `text` for use inside a RegExp. */
function literal(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

// ------------------------------------------------------------------- put --resume, changed

/**
 * Leaves data on the server as an interrupted upload of `name` would: a raw put announcing
 * `size`, `bytes` sent, then the connection dropped. Waits until the server has kept it.
 */
async function leaveKept(
  server: ServerProcess,
  name: string,
  bytes: Uint8Array,
  size: number,
): Promise<void> {
  const keptBefore = server.lines.filter((line) => /kept for resume/.test(line)).length;
  {
    using wire = await Wire.connect(server);
    await wire.handshake();
    await wire.write(
      encodeControl(FrameType.REQUEST, { op: "put", name, size, overwrite: false }),
    );
    await wire.expectFrame(FrameType.OK, "put accepted");
    await wire.write(dataFrame(bytes));
    // Every byte sent has arrived once the server has sent nothing back for the DATA: wait
    // until the staging file holds them, then drop the connection mid-upload.
    await waitFor("the bytes staged", async () => {
      const staged = await listDir(`${server.root}/.ferry-staging`);
      if (staged.length !== 1) return false;
      const info = await Deno.stat(`${server.root}/.ferry-staging/${staged[0]}`).catch(() => null);
      return info?.size === bytes.length;
    });
  }
  await waitFor(
    "the server to keep the interrupted upload",
    () => server.lines.filter((line) => /kept for resume/.test(line)).length > keptBefore,
  );
}

Deno.test("put --resume says when what the server kept is not the local file's start, and starts over", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  const local = `${work.path}/big.bin`;
  const content = randomBytes(4 * MiB);
  await Deno.writeFile(local, content);
  const startingOver = `ferry: big.bin does not match what the server kept of "big.bin"; ` +
    "starting over";
  const put = async (extra: string[] = []) => {
    const result = await ferry(server, ["put", "big.bin", "--resume", ...extra], {
      cwd: work.path,
    });
    assertSuccess(result, "put --resume");
    assert.ok(await filesEqual(local, `${server.root}/big.bin`), "the server holds the file");
    await Deno.remove(`${server.root}/big.bin`);
    return stderrLines(result);
  };

  // The control: kept data that is the start of the file is resumed, without a word about it.
  await leaveKept(server, "big.bin", content.subarray(0, 2 * MiB), content.length);
  const resumed = await put();
  assert.equal(resumed.length, 1, resumed.join("\n"));
  assert.match(resumed[0], /resumed after 2\.00 MiB/);

  // Other bytes of the same size: the client finds out from the kept data's checksum.
  await leaveKept(server, "big.bin", randomBytes(2 * MiB), content.length);
  const changed = await put();
  assert.equal(changed[0], startingOver, changed.join("\n"));
  assert.match(changed[1], /^Uploaded big\.bin as "big\.bin": 4\.00 MiB in /);
  assert.doesNotMatch(changed[1], /resumed/);

  // Kept for another size (the file grew, or was replaced): the server drops it and says so.
  await leaveKept(server, "big.bin", content.subarray(0, 2 * MiB), 8 * MiB);
  const resized = await put();
  assert.deepEqual(resized.length, 2, resized.join("\n"));
  assert.equal(resized[0], startingOver);

  // --quiet says nothing about it.
  await leaveKept(server, "big.bin", content.subarray(0, 2 * MiB), 8 * MiB);
  assert.deepEqual(await put(["--quiet"]), []);
});

// ------------------------------------------------------------------------------ --max-size

Deno.test("--max-size: every refusal and the banner give sizes in one form, readable and exact", async () => {
  await using server = await startServer({ args: ["--max-size", "1M"] });
  await using work = await makeTempDir();
  const limit = "1.00 MiB (1048576 bytes)";
  await server.waitForLog(new RegExp(`max size ${literal(limit)},`));
  await Deno.writeFile(`${work.path}/two.bin`, randomBytes(2 * MiB));
  await Deno.writeFile(`${work.path}/by-one.bin`, randomBytes(MiB + 1));
  const refused = (size: string) =>
    new RegExp(
      `^ferry: Refused by server: Upload${literal(size)} is over the server's limit of ` +
        `${literal(limit)}$`,
    );

  // Announced sizes, refused up front: far over, and one byte over.
  assertFailure(
    await ferry(server, ["put", "two.bin"], { cwd: work.path }),
    refused(" of 2.00 MiB (2097152 bytes)"),
    { what: "put of 2 MiB" },
  );
  assertFailure(
    await ferry(server, ["put", "by-one.bin"], { cwd: work.path }),
    refused(" of 1.00 MiB (1048577 bytes)"),
    { what: "put of 1 MiB + 1" },
  );
  // A stream, cut when it passes the limit, whatever it passes it by.
  for (const size of [3 * MiB, MiB + 1]) {
    assertFailure(
      await ferry(server, ["put", "-", "stream.bin"], { stdin: randomBytes(size) }),
      refused(""),
      { what: `put of ${size} bytes from stdin` },
    );
  }
  assert.deepEqual(await listDir(server.root), [".ferry-resume", ".ferry-staging"]);
});

// ---------------------------------------------------------------------------------- --port

Deno.test("ferry-server --port: 0 picks a free port and prints it; the message for a bad one says 0 is allowed", async () => {
  for (const bad of ["65536", "1.5", "x"]) {
    assertUsageError(await runServer(["--port", bad]), "ferry-server", {
      what: `--port ${bad}`,
      pattern: new RegExp(
        `Invalid port "${literal(bad)}": expected a number from 0 \\(any free port\\) to 65535`,
      ),
    });
  }
  // The client's PORT cannot be 0, and its message keeps saying so.
  assertUsageError(await ferry({ host: "127.0.0.1", port: 0 }, ["list"]), "ferry", {
    what: "client port 0",
    pattern: /Invalid port "0": expected a number from 1 to 65535/,
  });
  await using server = await startServer({ args: ["--port", "0"] });
  assert.ok(server.port > 0, `the banner gives the port chosen: ${server.lines[0]}`);
  assertSuccess(await ferry(server, ["list"]), "list on the port the banner gave");
});

// ---------------------------------------------------------------------------- start failures

/** What a server that was expected to refuse to start did. */
interface StartAttempt {
  /** Exit code, or null if it started (it is then stopped). */
  code: number | null;
  /** Its stderr lines. */
  lines: string[];
}

/**
 * Runs `server.ts ARGS` (behind `wrapper`, a command and its arguments, if given) until it exits
 * or prints its banner; one that starts is stopped at once and reported with code null.
 */
async function tryToStart(args: string[], wrapper: string[] = []): Promise<StartAttempt> {
  const deno = [Deno.execPath(), "run", ...PROGRAM_PERMISSIONS, "server.ts", ...args];
  const [program, ...rest] = [...wrapper, ...deno];
  const child = spawnServing(program, rest);
  const output = collectLines(child.stderr);
  const exited = child.status.then((status) => status.code);
  const started = output.firstMatch(SERVER_BANNER).then((match) => match ? null : undefined);
  const code = await Promise.race([exited, started]);
  if (code === null) child.kill("SIGTERM");
  await child.status;
  await output.done;
  return { code: code ?? (await exited), lines: output.lines };
}

/**
 * How to run the server without the privileges that let root read any folder and bind any port,
 * so that permissions are checked as for any user; [] when this process is not root anyway, and
 * null when they cannot be dropped here.
 */
async function unprivileged(): Promise<string[] | null> {
  // (Deno.uid would need --allow-sys, which the tests are not run with.)
  const uid = decoder.decode((await runCommand("id", ["-u"])).stdout).trim();
  if (uid !== "0") return [];
  const wrapper = [
    "setpriv",
    "--bounding-set",
    "-dac_override,-dac_read_search,-net_bind_service",
  ];
  const [program, ...args] = wrapper;
  return await commandWorks(program, [...args, "true"]) ? wrapper : null;
}

Deno.test("a root or an address the server may not use is named as such: which one failed", async () => {
  const wrapper = await unprivileged();
  if (wrapper === null) {
    console.warn("skipped: running as root, and setpriv cannot drop root's privileges here");
    return;
  }
  await using base = await makeTempDir();
  const root = `${base.path}/locked`;
  await Deno.mkdir(root);
  await Deno.chmod(root, 0o000);
  try {
    const locked = await tryToStart(["0", "--root", root], wrapper);
    assert.equal(locked.code, 1, locked.lines.join("\n"));
    assert.deepEqual(locked.lines, [`ferry-server: Cannot use root ${root}: permission denied`]);
  } finally {
    await Deno.chmod(root, 0o755);
  }
  // The other way round: the root is fine, the port is not this user's to take.
  const privileged = await tryToStart(["1", "--root", `${base.path}/open`], wrapper);
  assert.equal(privileged.code, 1, privileged.lines.join("\n"));
  assert.deepEqual(privileged.lines, [
    "ferry-server: Cannot listen on 127.0.0.1:1: permission denied",
  ]);
});

Deno.test("--root creates at most its last folder, and says when the folder above is missing", async () => {
  await using base = await makeTempDir();
  const root = `${base.path}/a/b/c/d`;
  const typo = await tryToStart(["0", "--root", root]);
  assert.equal(typo.code, 1, `a root under missing folders must not start:\n${typo.lines}`);
  assert.deepEqual(typo.lines, [
    `ferry-server: Root ${root} cannot be made: no such folder ${base.path}/a/b/c ` +
    "(only the last folder of the root is created)",
  ]);
  assert.deepEqual(await listDir(base.path), [], "nothing was created");

  // The control: the last folder alone is made, as for the default ./ferry-data.
  await using server = await startServer({ root: `${base.path}/new` });
  assert.ok((await Deno.stat(server.root)).isDirectory);
});

// --------------------------------------------------------------------- mput and mget lines

Deno.test("mput and mget name a failed file once", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  await Deno.mkdir(`${work.path}/dir/sub`, { recursive: true });
  await Deno.writeTextFile(`${work.path}/ok.txt`, "ok\n");
  await Deno.writeTextFile(`${server.root}/there.txt`, "there\n");
  await Deno.writeTextFile(`${work.path}/there.txt`, "local\n");

  const mput = await ferry(server, ["mput", "dir/sub", "ok.txt"], { cwd: work.path });
  assert.equal(mput.code, 1, mput.stderr);
  const putLines = stderrLines(mput);
  assert.equal(putLines[0], "ferry: Cannot upload dir/sub: it is a folder");
  assert.match(putLines[1], /^Uploaded ok\.txt as "ok\.txt": /);
  assert.equal(putLines[2], "ferry: 1 of 2 files failed");

  const mget = await ferry(server, ["mget", "there.txt", "missing.txt"], { cwd: work.path });
  assert.equal(mget.code, 1, mget.stderr);
  assert.deepEqual(stderrLines(mget), [
    "ferry: Local file exists: there.txt (use --force to replace it)",
    'ferry: Refused by server: No such file: "missing.txt"',
    "ferry: 2 of 2 files failed",
  ]);

  // A failure that does not name the file is still told whose it is.
  await Deno.writeTextFile(`${work.path}/ok2.txt`, "ok\n");
  await using readOnly = await startServer({ args: ["--read-only"] });
  const refused = await ferry(readOnly, ["mput", "ok.txt", "ok2.txt"], { cwd: work.path });
  assert.deepEqual(stderrLines(refused), [
    "ferry: ok.txt: Refused by server: Server is read-only: uploads are refused",
    "ferry: ok2.txt: Refused by server: Server is read-only: uploads are refused",
    "ferry: 2 of 2 files failed",
  ]);
});

// ------------------------------------------------------------------------ --stall-timeout

Deno.test("--stall-timeout: the reason comes first, with the note on the kept .part on the same line", async () => {
  await using work = await makeTempDir();
  let port = 0;
  const result = await withFakeServer(async (wire) => {
    await wire.write(encodeControl(FrameType.OK, { size: 2 * MiB, mtime: 0, offset: 0 }));
    await wire.write(dataFrame(randomBytes(64 * 1024)));
    // Then nothing: the client gives up on its own.
    await wire.waitForClose(15000);
  }, (p) => {
    port = p;
    return ferry({ host: "127.0.0.1", port: p }, ["get", "x.bin", "--stall-timeout", "1"], {
      cwd: work.path,
    });
  });
  assertFailure(
    result,
    new RegExp(
      `^ferry: Server at 127\\.0\\.0\\.1:${port} sent and took nothing for 1 s; gave up ` +
        "\\(--stall-timeout\\); partial download kept in x\\.bin\\.part " +
        "\\(run again with --resume to continue\\)$",
    ),
    { what: "a get from a server that stalls" },
  );
  assert.equal((await Deno.stat(`${work.path}/x.bin.part`)).size, 64 * 1024);
});

Deno.test("a get cut before any byte arrived keeps no .part, and its message claims none", async () => {
  await using work = await makeTempDir();
  const result = await withFakeServer(async (wire) => {
    await wire.write(encodeControl(FrameType.OK, { size: 2 * MiB, mtime: 0, offset: 0 }));
    // Then the connection goes, before any data.
  }, (p) => ferry({ host: "127.0.0.1", port: p }, ["get", "x.bin"], { cwd: work.path }));
  // One line, the reason alone: no note on a kept .part.
  assertFailure(result, /^ferry: [^;]*connection[^;]*$/i, { what: "a get cut at once" });
  assert.deepEqual([...Deno.readDirSync(work.path)], [], "nothing left: no x.bin, no x.bin.part");
});

// ------------------------------------------------------------------------------------ HTTP

Deno.test("a client that reached an HTTP server says so at once", async () => {
  await using http = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => new Response("hello\n"),
  );
  const result = await ferry({ host: "127.0.0.1", port: http.addr.port }, ["list"]);
  assertFailure(
    result,
    new RegExp(
      `^ferry: Server at 127\\.0\\.0\\.1:${http.addr.port} is not a ferry server: ` +
        "it answered HTTP$",
    ),
    { what: "list against an HTTP server" },
  );
});

Deno.test("a client that reached python3 -m http.server, which waits for a whole line, says so at once", async () => {
  if (!await commandWorks("python3", ["--version"])) {
    console.log("python3 not found: skipped");
    return;
  }
  await using dir = await makeTempDir();
  const child = new Deno.Command("python3", {
    args: ["-u", "-m", "http.server", "0", "--bind", "127.0.0.1"],
    cwd: dir.path,
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  try {
    const { lines, firstMatch } = collectLines(child.stdout);
    const match = await firstMatch(/port (\d+)/);
    assert.ok(match, `python3 -m http.server did not start: ${lines.join("\n")}`);
    const port = Number(match[1]);
    const started = performance.now();
    // Never a line from the client, it used to wait for one: the client's 15 s handshake timeout.
    const result = await ferry({ host: "127.0.0.1", port }, ["list"]);
    const ms = performance.now() - started;
    assertFailure(
      result,
      new RegExp(
        `^ferry: Server at 127\\.0\\.0\\.1:${port} is not a ferry server: it answered HTTP$`,
      ),
      { what: "list against python3 -m http.server" },
    );
    assert.ok(ms < 5000, `said so after ${ms.toFixed(0)} ms`);
  } finally {
    child.kill("SIGTERM");
    await child.status;
  }
});

// --------------------------------------------------------------------- get into a folder

Deno.test("get and mget write into a folder only when LOCAL names it, never when a default name is one", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  await Deno.mkdir(`${server.root}/dir`);
  await Deno.writeTextFile(`${server.root}/dir/f1.txt`, "one\n");
  await Deno.mkdir(`${work.path}/f1.txt`);
  const inTheWay = "ferry: Cannot write f1.txt: it is a folder " +
    "(to download into it: get dir/f1.txt f1.txt/)";

  const get = await ferry(server, ["get", "dir/f1.txt"], { cwd: work.path });
  assertFailure(get, new RegExp(`^${literal(inTheWay)}$`), { what: "get onto a folder" });
  const mget = await ferry(server, ["mget", "dir/f1.txt"], { cwd: work.path });
  assert.equal(mget.code, 1, mget.stderr);
  assert.deepEqual(stderrLines(mget), [inTheWay, "ferry: 1 of 1 files failed"]);
  assert.deepEqual(await listDir(`${work.path}/f1.txt`), [], "nothing was written into it");

  // Named by the user, with or without the slash, the folder is where the file goes.
  for (const local of ["f1.txt", "f1.txt/"]) {
    const into = await ferry(server, ["get", "dir/f1.txt", local, "--force"], { cwd: work.path });
    assertSuccess(into, `get into ${local}`);
    assert.equal(await Deno.readTextFile(`${work.path}/f1.txt/f1.txt`), "one\n");
  }
});

// ---------------------------------------------------------------------------- odd names

Deno.test("list shows every name in the root: unsafe ones escaped, and ones not valid UTF-8 marked so", async () => {
  await using server = await startServer();
  const root = server.root;
  await Deno.mkdir(`${root}/sub`);
  await Deno.writeTextFile(`${root}/plain.txt`, "1");
  await Deno.writeTextFile(`${root}/new\nline`, "22");
  await Deno.writeTextFile(`${root}/esc\x1b[31m`, "333");
  await Deno.writeTextFile(`${root}/"quoted"`, "4");
  await Deno.writeTextFile(`${root}/ok\ufffd`, "55");
  // Two names that Deno reads alike (each bad byte as U+FFFD), and one that reads like a real
  // name: all are listed, each as what it is.
  await createByBytes(root, "bad\\377name", "x");
  await createByBytes(root, "bad\\376name", "y");
  await createByBytes(root, "ok\\377", "z");
  await createByBytes(`${root}/sub`, "deep\\303", "w");

  // list -r: the whole tree, folders marked with "/".
  const list = await ferry(server, ["list", "-r"]);
  assertSuccess(list, "list");
  assert.deepEqual(decoder.decode(list.stdout).split("\n"), [
    String.raw`"\"quoted\""`,
    String.raw`"bad\ufffdname" (not UTF-8)`,
    String.raw`"bad\ufffdname" (not UTF-8)`,
    String.raw`"esc\u001b[31m"`,
    String.raw`"new\nline"`,
    String.raw`"ok\ufffd" (not UTF-8)`,
    "ok\ufffd",
    "plain.txt",
    "sub/",
    String.raw`"sub/deep\ufffd" (not UTF-8)`,
    "",
  ]);

  const json = await ferry(server, ["list", "-r", "--json"]);
  assertSuccess(json, "list --json");
  const entries = JSON.parse(decoder.decode(json.stdout)) as Record<string, unknown>[];
  assert.deepEqual(
    entries.map((e) => [e.name, e.size, e.notUtf8 ?? false]),
    [
      ['"quoted"', 1, false],
      ["bad\ufffdname", null, true],
      ["bad\ufffdname", null, true],
      ["esc\x1b[31m", 3, false],
      ["new\nline", 2, false],
      ["ok\ufffd", null, true],
      ["ok\ufffd", 2, false],
      ["plain.txt", 1, false],
      ["sub", 0, false],
      ["sub/deep\ufffd", null, true],
    ],
  );

  const long = await ferry(server, ["list", "-r", "-l"]);
  assertSuccess(long, "list -l");
  const lines = decoder.decode(long.stdout).split("\n");
  assert.match(lines[1], /^ {9}\? {2}\? {17}"bad\\ufffdname" \(not UTF-8\)$/);
  assert.equal(lines.at(-2), "9 files, 1 folder, 9 B");

  // Listed is not fetchable: each is refused with the reason.
  assertFailure(
    await ferry(server, ["get", "bad\ufffdname", "-"]),
    /^ferry: Refused by server: Cannot serve "bad\ufffdname": its name on the server is not valid UTF-8$/,
    { what: "get of a name that is not UTF-8" },
  );
  assertFailure(
    await ferry(server, ["get", "new\nline", "-"]),
    /^ferry: Refused by server: Refused name "new\\nline": it contains a control character$/,
    { what: "get of a name with a newline" },
  );
  // The real name that reads like a bad one is served.
  const real = await ferry(server, ["get", "ok\ufffd", "-"]);
  assertSuccess(real, "get of a real name holding U+FFFD");
  assert.equal(decoder.decode(real.stdout), "55");
});

Deno.test("a folder large enough to have its lookups shared out lists as a small one does", async () => {
  await using server = await startServer();
  const dir = `${server.root}/many`;
  await Deno.mkdir(`${dir}/sub`, { recursive: true });
  // More names than SPLIT_NAMES, so that its lookups are shared between two threads, with names
  // that read alike (not UTF-8) and links in and out of the root among them.
  const filler = SPLIT_NAMES + 100;
  for (let i = 0; i < filler; i++) {
    await Deno.writeTextFile(`${dir}/f${String(i).padStart(5, "0")}`, "x".repeat(i % 7));
  }
  await Deno.writeTextFile(`${dir}/ok\ufffd`, "55");
  await createByBytes(dir, "bad\\377name", "x");
  await createByBytes(dir, "bad\\376name", "y");
  await createByBytes(dir, "ok\\377", "z");
  await Deno.symlink("f00003", `${dir}/link-in`);
  await Deno.symlink("/etc/hostname", `${dir}/link-out`);

  const json = await ferry(server, ["list", "many", "--json"]);
  assertSuccess(json, "list --json");
  const entries = JSON.parse(decoder.decode(json.stdout)) as Record<string, unknown>[];
  const files = Array.from({ length: filler }, (_, i) => {
    const name = `many/f${String(i).padStart(5, "0")}`;
    return [name, i % 7, false];
  });
  assert.deepEqual(
    entries.map((e) => [e.name, e.size, e.notUtf8 ?? false]),
    [
      ["many/bad\ufffdname", null, true],
      ["many/bad\ufffdname", null, true],
      ...files,
      ["many/link-in", 3, false],
      ["many/ok\ufffd", null, true],
      ["many/ok\ufffd", 2, false],
      ["many/sub", 0, false],
    ],
  );
  const mtime = (await Deno.lstat(`${dir}/f00005`)).mtime!.getTime();
  assert.equal(entries.find((e) => e.name === "many/f00005")!.mtime, new Date(mtime).toISOString());
});
