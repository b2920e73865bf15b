/**
 * Integration tests of the client command line against the real server: tests start `server.ts`
 * on port 0 with a temporary root and run `client.ts` as a user would (or `deno task client`),
 * then check exit codes, output, the files on both sides, and the server's log. Where only a
 * hostile or foreign server can show a behaviour (names with control characters, a TLS or seed
 * peer), a one-connection fake server built from lib/protocol.ts frames stands in.
 *
 * @module
 */

import assert from "node:assert/strict";
import { encodeListing, type ListEntry } from "../lib/protocol.ts";
import { encodePreamble, FrameType } from "../lib/frames.ts";
import { FrameReader, FrameWriter } from "../lib/frame_io.ts";
import {
  assertFailure,
  assertRootHolds,
  assertSuccess,
  assertUsageError,
  closedPort,
  evalUnderV8Flags,
  ferry,
  filesEqual,
  listDir,
  makeTempDir,
  pathExists,
  PROGRAM_PERMISSIONS,
  randomBytes,
  REPO_ROOT,
  resultOf,
  runClient,
  runCommand,
  type RunResult,
  runServer,
  type ServerProcess,
  spawnClient,
  STAGING_DIR,
  startServer,
  waitFor,
  writeRandomFile,
} from "./harness.ts";
import { checksumOf, concat, serveOnce } from "./wire.ts";

const MiB = 1 << 20;
const decoder = new TextDecoder();
/** Characters that would drive a terminal: C0, DEL, C1, bidi controls, line separators. */
const TERMINAL_CONTROLS =
  // deno-lint-ignore no-control-regex -- finding control characters is the point
  /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

Deno.test("put then get round-trips 5 MiB of random binary, logged one line per request", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  const data = randomBytes(5 * MiB);
  await Deno.writeFile(`${work.path}/random.bin`, data);

  assertSuccess(await ferry(server, ["put", "random.bin"], { cwd: work.path }), "put");
  assert.deepEqual(await Deno.readFile(`${server.root}/random.bin`), data);

  const got = await ferry(server, ["get", "random.bin", "back.bin"], { cwd: work.path });
  assertSuccess(got, "get");
  assert.equal(got.stdout.length, 0, "messages go to stderr, not stdout");
  assert.ok(await filesEqual(`${work.path}/random.bin`, `${work.path}/back.bin`));
  assert.deepEqual(await listDir(work.path), ["back.bin", "random.bin"], "no .part left behind");
  await assertRootHolds(server.root, ["random.bin"]);

  // One log line per request, with the name, the byte count and the result.
  await server.waitForLog(/ put "random\.bin" 5242880 bytes ok /);
  await server.waitForLog(/ get "random\.bin" 5242880 bytes ok /);
  assert.equal(server.lines.filter((line) => /"random\.bin"/.test(line)).length, 2);
});

Deno.test("an empty file round-trips", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  await Deno.writeFile(`${work.path}/empty.txt`, new Uint8Array(0));

  assertSuccess(await ferry(server, ["put", "empty.txt"], { cwd: work.path }), "put");
  assert.equal((await Deno.stat(`${server.root}/empty.txt`)).size, 0);

  assertSuccess(await ferry(server, ["get", "empty.txt", "back.txt"], { cwd: work.path }), "get");
  const back = await Deno.stat(`${work.path}/back.txt`);
  assert.ok(back.isFile);
  assert.equal(back.size, 0);

  const listed = await ferry(server, ["list"]);
  assertSuccess(listed, "list");
  assert.equal(new TextDecoder().decode(listed.stdout), "empty.txt\n");
});

Deno.test("a 100 MiB file round-trips intact", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  const size = 100 * MiB;
  await writeRandomFile(`${work.path}/big.bin`, size);

  assertSuccess(await ferry(server, ["put", "big.bin"], { cwd: work.path }), "put");
  assert.equal((await Deno.stat(`${server.root}/big.bin`)).size, size);
  assert.ok(await filesEqual(`${work.path}/big.bin`, `${server.root}/big.bin`));

  assertSuccess(await ferry(server, ["get", "big.bin", "back.bin"], { cwd: work.path }), "get");
  assert.ok(await filesEqual(`${work.path}/big.bin`, `${work.path}/back.bin`));
  assert.deepEqual(await listDir(work.path), ["back.bin", "big.bin"]);
  await assertRootHolds(server.root, ["big.bin"]);
});

Deno.test("a non-ASCII name with spaces round-trips under its exact name", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  const name = "résumé ü 1.txt".normalize("NFC");
  const data = new TextEncoder().encode("Curriculum vitæ — ünïcödé content\n");
  await Deno.mkdir(`${work.path}/up`);
  await Deno.mkdir(`${work.path}/down`);
  await Deno.writeFile(`${work.path}/up/${name}`, data);

  // No REMOTE: the remote name defaults to the local base name.
  assertSuccess(await ferry(server, ["put", name], { cwd: `${work.path}/up` }), "put");
  assert.deepEqual(await Deno.readFile(`${server.root}/${name}`), data);

  const listed = await ferry(server, ["list"]);
  assertSuccess(listed, "list");
  assert.equal(new TextDecoder().decode(listed.stdout), `${name}\n`, "listed as given (NFC)");

  // No LOCAL: the local name defaults to the remote base name, in the working folder.
  assertSuccess(await ferry(server, ["get", name], { cwd: `${work.path}/down` }), "get");
  assert.deepEqual(await listDir(`${work.path}/down`), [name]);
  assert.deepEqual(await Deno.readFile(`${work.path}/down/${name}`), data);
});

Deno.test("put from stdin and get to stdout carry exactly the bytes", async () => {
  await using server = await startServer();
  // Not a multiple of any buffer size, so a lost tail would show.
  const data = randomBytes(3 * MiB + 12345);

  const put = await ferry(server, ["put", "-", "piped.bin"], { stdin: data });
  assertSuccess(put, "put from stdin");
  assert.equal(put.stdout.length, 0, "put prints nothing on stdout");
  assert.deepEqual(await Deno.readFile(`${server.root}/piped.bin`), data);

  const get = await ferry(server, ["get", "piped.bin", "-"]);
  assertSuccess(get, "get to stdout");
  assert.equal(get.stdout.length, data.length);
  assert.deepEqual(get.stdout, data, "stdout must be exactly the file's bytes");

  // An empty stdin stores an empty file, and an empty file writes nothing to stdout.
  assertSuccess(await ferry(server, ["put", "-", "nothing.bin"], { stdin: "" }), "empty put");
  assert.equal((await Deno.stat(`${server.root}/nothing.bin`)).size, 0);
  const none = await ferry(server, ["get", "nothing.bin", "-"]);
  assertSuccess(none, "empty get to stdout");
  assert.equal(none.stdout.length, 0);
  await assertRootHolds(server.root, ["nothing.bin", "piped.bin"]);
});

Deno.test("put refuses an existing name, and --overwrite replaces it", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  const first = randomBytes(100000);
  const second = randomBytes(200000);
  await Deno.writeFile(`${work.path}/first.bin`, first);
  await Deno.writeFile(`${work.path}/second.bin`, second);

  assertSuccess(await ferry(server, ["put", "first.bin", "name.bin"], { cwd: work.path }), "put");
  const refused = await ferry(server, ["put", "second.bin", "name.bin"], { cwd: work.path });
  assertFailure(refused, /File exists: "name\.bin" \(use --overwrite to replace it\)$/, {
    what: "put over an existing name, with the flag that would replace it",
  });
  assert.deepEqual(await Deno.readFile(`${server.root}/name.bin`), first, "server copy unchanged");
  // The same refusal from stdin, where the client may already be reading data.
  const piped = await ferry(server, ["put", "-", "name.bin"], { stdin: second });
  assertFailure(piped, /exists/i, { what: "put from stdin over an existing name" });
  assert.deepEqual(await Deno.readFile(`${server.root}/name.bin`), first, "server copy unchanged");
  // mput gives the same hint, file by file, naming the file once.
  await Deno.writeFile(`${work.path}/name.bin`, second);
  const many = await ferry(server, ["mput", "first.bin", "name.bin"], { cwd: work.path });
  assert.equal(many.code, 1);
  assert.match(
    many.stderr,
    /^ferry: Refused by server: File exists: "name\.bin" \(use --overwrite/m,
  );
  assert.deepEqual(await Deno.readFile(`${server.root}/name.bin`), first, "server copy unchanged");
  await Deno.remove(`${server.root}/first.bin`);
  await assertRootHolds(server.root, ["name.bin"]);

  const replaced = await ferry(server, ["put", "--overwrite", "second.bin", "name.bin"], {
    cwd: work.path,
  });
  assertSuccess(replaced, "put --overwrite");
  assert.deepEqual(await Deno.readFile(`${server.root}/name.bin`), second);
  await assertRootHolds(server.root, ["name.bin"]);
  await server.waitForLog(/ put "name\.bin" 0 bytes refused \(exists/);
});

Deno.test("get of a missing name exits 1 and creates no local file", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();

  const named = await ferry(server, ["get", "missing.bin", "local.bin"], { cwd: work.path });
  assertFailure(named, /missing\.bin/, { what: "get of a missing name" });
  assert.match(named.stderr, /no such file|not found/i);
  const defaulted = await ferry(server, ["get", "missing.bin"], { cwd: work.path });
  assertFailure(defaulted, /missing\.bin/, { what: "get of a missing name to the default LOCAL" });
  assert.deepEqual(await listDir(work.path), [], "no LOCAL, no LOCAL.part");

  const toStdout = await ferry(server, ["get", "missing.bin", "-"], { cwd: work.path });
  assertFailure(toStdout, /missing\.bin/, { what: "get of a missing name to stdout" });
  assert.deepEqual(await listDir(work.path), []);
});

Deno.test("get refuses an existing local file, and --force replaces it", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  const remote = randomBytes(50000);
  const local = new TextEncoder().encode("precious local data\n");
  await Deno.writeFile(`${server.root}/remote.bin`, remote);
  await Deno.writeFile(`${work.path}/local.bin`, local);

  const refused = await ferry(server, ["get", "remote.bin", "local.bin"], { cwd: work.path });
  assertFailure(refused, /exists/i, { what: "get over an existing local file" });
  assert.match(refused.stderr, /--force/, "the message says how to replace it");
  assert.deepEqual(await Deno.readFile(`${work.path}/local.bin`), local, "local file unchanged");
  assert.deepEqual(await listDir(work.path), ["local.bin"], "no .part left behind");

  const forced = await ferry(server, ["get", "remote.bin", "local.bin", "--force"], {
    cwd: work.path,
  });
  assertSuccess(forced, "get --force");
  assert.deepEqual(await Deno.readFile(`${work.path}/local.bin`), remote);
  assert.deepEqual(await listDir(work.path), ["local.bin"]);
});

Deno.test("list -r prints one name per line, sorted, and never staging files", async () => {
  await using server = await startServer();
  const names = ["b.txt", "a.txt", "Zeta.bin", "sub/inner.txt", "c d.txt"];
  for (const name of names) {
    assertSuccess(await ferry(server, ["put", "-", name], { stdin: name }), `put ${name}`);
  }
  // Something an upload in progress would leave in the staging folder.
  await Deno.writeFile(`${server.root}/${STAGING_DIR}/leftover.upload`, new Uint8Array(10));

  const listed = await ferry(server, ["list", "-r"]);
  assertSuccess(listed, "list");
  const text = new TextDecoder().decode(listed.stdout);
  // Folders are listed too, marked with a trailing "/".
  const sorted = [...names, "sub/"].sort();
  assert.equal(text, sorted.map((name) => `${name}\n`).join(""));
  assert.doesNotMatch(text, /ferry-staging|leftover/);
  assert.equal(listed.stderr, "", "list prints nothing but the names");

  // An empty root lists as nothing at all.
  await using empty = await startServer();
  const none = await ferry(empty, ["list"]);
  assertSuccess(none, "list of an empty root");
  assert.equal(none.stdout.length, 0);
});

Deno.test("list --json gives the name, size and mtime of every file", async () => {
  await using server = await startServer();
  const files: Record<string, number> = { "one.bin": 1, "empty.bin": 0, "big.bin": 300000 };
  for (const [name, size] of Object.entries(files)) {
    assertSuccess(await ferry(server, ["put", "-", name], { stdin: randomBytes(size) }), name);
  }
  await Deno.writeFile(`${server.root}/${STAGING_DIR}/hidden.upload`, new Uint8Array(5));

  const listed = await ferry(server, ["list", "--json"]);
  assertSuccess(listed, "list --json");
  const entries = JSON.parse(new TextDecoder().decode(listed.stdout));
  assert.ok(Array.isArray(entries));
  assert.deepEqual(entries.map((e: { name: string }) => e.name), Object.keys(files).sort());
  for (const entry of entries) {
    assert.deepEqual(Object.keys(entry).sort(), ["mtime", "name", "size", "type"]);
    assert.equal(entry.type, "file");
    assert.equal(entry.size, files[entry.name], `size of ${entry.name}`);
    // mtime may be milliseconds or an ISO date; either way it must be the file's real mtime.
    const ms = typeof entry.mtime === "number" ? entry.mtime : Date.parse(entry.mtime);
    assert.ok(Number.isFinite(ms), `mtime of ${entry.name}: ${entry.mtime}`);
    const actual = (await Deno.stat(`${server.root}/${entry.name}`)).mtime!.getTime();
    assert.ok(Math.abs(ms - actual) < 1000, `mtime of ${entry.name}: ${entry.mtime}`);
  }
});

Deno.test("list --long gives size, date and name per line, then a total", async () => {
  await using server = await startServer();
  assertSuccess(await ferry(server, ["put", "-", "a b.txt"], { stdin: randomBytes(2048) }), "a");
  const single = await ferry(server, ["list", "-l"]);
  assertSuccess(single, "list -l");
  assert.match(new TextDecoder().decode(single.stdout), /a b\.txt\n1 file, 2\.00 KiB\n$/);
  assertSuccess(await ferry(server, ["put", "-", "sub/z.bin"], { stdin: randomBytes(3) }), "z");
  const listed = await ferry(server, ["list", "--long", "-r"]);
  assertSuccess(listed, "list --long");
  const lines = new TextDecoder().decode(listed.stdout).split("\n");
  // Sizes are right-aligned to one width; dates are local time, so only their shape is checked.
  const date = "\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d";
  assert.match(lines[0], new RegExp(`^2\\.00 KiB  ${date}  a b\\.txt$`));
  assert.match(lines[1], new RegExp(`^       -  ${date}  sub/$`));
  assert.match(lines[2], new RegExp(`^     3 B  ${date}  sub/z\\.bin$`));
  assert.equal(lines[3], "2 files, 1 folder, 2.00 KiB");
  assert.equal(lines[4], "");
  assert.equal(lines.length, 5);
});

Deno.test("usage errors exit 2 with a one-line message and no stack trace", async () => {
  const cases: [string, string[]][] = [
    ["no arguments", []],
    ["a port that is not a number", ["127.0.0.1", "notaport", "list"]],
    ["a port out of range", ["127.0.0.1", "70000", "list"]],
    ["an unknown command", ["127.0.0.1", "9021", "fetch", "x"]],
    ["put - without REMOTE", ["127.0.0.1", "9021", "put", "-"]],
    ["put without LOCAL", ["127.0.0.1", "9021", "put"]],
    ["list with two folders", ["127.0.0.1", "9021", "list", "a", "extra"]],
    ["--overwrite on list", ["127.0.0.1", "9021", "list", "--overwrite"]],
    ["--long on put", ["127.0.0.1", "9021", "put", "x", "--long"]],
    ["--overwrite on get", ["127.0.0.1", "9021", "get", "x", "--overwrite"]],
    ["--force on put", ["--force", "127.0.0.1", "9021", "put", "x"]],
    ["an unknown option", ["127.0.0.1", "9021", "list", "--bogus"]],
    ["put with an empty LOCAL", ["127.0.0.1", "9021", "put", ""]],
    ["put with an empty REMOTE", ["127.0.0.1", "9021", "put", "a.bin", ""]],
    ["get with an empty LOCAL", ["127.0.0.1", "9021", "get", "a.bin", ""]],
    ["a --timeout over setTimeout's limit", ["127.0.0.1", "9021", "list", "--timeout", "3e6"]],
    ["an infinite --timeout", ["127.0.0.1", "9021", "list", "--timeout", "Infinity"]],
  ];
  for (const [what, args] of cases) {
    assertUsageError(await runClient(args), "ferry", { what: `client: ${what}` });
  }
  assertUsageError(await runServer(["notaport"]), "ferry-server", { what: "server: bad port" });
  assertUsageError(await runServer(["--bogus"]), "ferry-server", {
    what: "server: unknown option",
  });
});

Deno.test("connection refused exits 1 with a one-line message", async () => {
  const port = await closedPort();
  await using work = await makeTempDir();

  const list = await runClient(["127.0.0.1", String(port), "list"]);
  assertFailure(list, /refused/i, { what: "list against a closed port" });
  const get = await runClient(["127.0.0.1", String(port), "get", "x.bin"], { cwd: work.path });
  assertFailure(get, /refused/i, { what: "get against a closed port" });
  assert.deepEqual(await listDir(work.path), [], "a failed connection creates no file");
});

Deno.test("traversal names are refused and nothing is written outside the root", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  // A file next to the root: a traversal that worked would read or replace it.
  const secret = new TextEncoder().encode("outside the root\n");
  await Deno.writeFile(`${server.base}/secret.txt`, secret);
  await Deno.writeFile(`${work.path}/payload.txt`, new TextEncoder().encode("payload\n"));

  const hostile = [
    "../secret.txt",
    "a/../../secret.txt",
    `${server.base}/secret.txt`,
    "/etc/passwd",
    "./../secret.txt",
    "..",
  ];
  for (const name of hostile) {
    const got = await ferry(server, ["get", name, "out.txt"], { cwd: work.path });
    assertFailure(got, /refused/i, { what: `get ${JSON.stringify(name)}` });
  }
  assert.deepEqual(await listDir(work.path), ["payload.txt"], "no download was created");

  // Never aim a put at a real system file: a bug here must not damage the machine.
  const uploads = [
    "../x.txt",
    "a/../../x.txt",
    `${server.base}/abs.txt`,
    "../secret.txt",
    "sub/../../x.txt",
    "back\\..\\slash.txt",
  ];
  for (const name of uploads) {
    for (const overwrite of [[], ["--overwrite"]]) {
      const put = await ferry(server, ["put", "payload.txt", name, ...overwrite], {
        cwd: work.path,
      });
      assertFailure(put, /refused/i, { what: `put as ${JSON.stringify(name)} ${overwrite}` });
    }
  }
  assert.deepEqual(await listDir(server.base), ["root", "secret.txt"], "nothing written beside");
  assert.deepEqual(await Deno.readFile(`${server.base}/secret.txt`), secret);
  await assertRootHolds(server.root, []);
});

Deno.test("symlinks inside the root that lead outside are refused", async () => {
  await using server = await startServer();
  await using outside = await makeTempDir();
  await using work = await makeTempDir();
  const secret = new TextEncoder().encode("secret outside the root\n");
  await Deno.writeFile(`${outside.path}/secret.txt`, secret);
  await Deno.symlink(`${outside.path}/secret.txt`, `${server.root}/escape.txt`);
  await Deno.symlink(outside.path, `${server.root}/escape_dir`);
  // A symlink that stays inside the root is fine and must keep working.
  const inside = new TextEncoder().encode("inside\n");
  await Deno.writeFile(`${server.root}/real.txt`, inside);
  await Deno.symlink(`${server.root}/real.txt`, `${server.root}/alias.txt`);
  await Deno.writeFile(`${work.path}/payload.txt`, new TextEncoder().encode("payload\n"));

  for (const name of ["escape.txt", "escape_dir/secret.txt"]) {
    const got = await ferry(server, ["get", name, "out.txt"], { cwd: work.path });
    assertFailure(got, /refused/i, { what: `get ${name}` });
    assert.match(got.stderr, /outside/i, "the reason is given");
  }
  assert.deepEqual(await listDir(work.path), ["payload.txt"], "no download was created");

  for (const name of ["escape_dir/new.txt", "escape_dir/secret.txt"]) {
    for (const overwrite of [[], ["--overwrite"]]) {
      const put = await ferry(server, ["put", "payload.txt", name, ...overwrite], {
        cwd: work.path,
      });
      assertFailure(put, /refused/i, {
        what: `put through a symlinked folder: ${name} ${overwrite}`,
      });
    }
  }
  // Without --overwrite the link is an existing name; with it, at most the link itself may be
  // replaced inside the root. Either way the file outside must not change.
  await ferry(server, ["put", "payload.txt", "escape.txt"], { cwd: work.path });
  await ferry(server, ["put", "payload.txt", "escape.txt", "--overwrite"], { cwd: work.path });
  assert.deepEqual(await listDir(outside.path), ["secret.txt"], "nothing written outside");
  assert.deepEqual(await Deno.readFile(`${outside.path}/secret.txt`), secret);

  const alias = await ferry(server, ["get", "alias.txt", "-"]);
  assertSuccess(alias, "get through a symlink that stays inside");
  assert.deepEqual(alias.stdout, inside);
  const listed = await ferry(server, ["list"]);
  assertSuccess(listed, "list");
  const names = new TextDecoder().decode(listed.stdout).split("\n").filter((n) => n !== "");
  assert.ok(!names.some((n) => n.startsWith("escape_dir/")), `listed: ${names}`);
  assert.ok(names.includes("alias.txt") && names.includes("real.txt"), `listed: ${names}`);
});

Deno.test("eight clients in parallel each put and get back a distinct 4 MiB file", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  const count = 8;
  const originals = await Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const dir = `${work.path}/c${i}`;
      await Deno.mkdir(dir);
      await writeRandomFile(`${dir}/mine.bin`, 4 * MiB);
      return dir;
    }),
  );

  const results = await Promise.all(originals.map(async (dir, i) => {
    const put = await ferry(server, ["put", "mine.bin", `p${i}.bin`], { cwd: dir });
    const get = put.code === 0
      ? await ferry(server, ["get", `p${i}.bin`, "back.bin"], { cwd: dir })
      : undefined;
    return { put, get };
  }));

  for (const [i, { put, get }] of results.entries()) {
    assertSuccess(put, `client ${i} put`);
    assertSuccess(get!, `client ${i} get`);
    const dir = originals[i];
    assert.ok(await filesEqual(`${dir}/mine.bin`, `${server.root}/p${i}.bin`), `server copy ${i}`);
    assert.ok(await filesEqual(`${dir}/mine.bin`, `${dir}/back.bin`), `round trip ${i}`);
  }
  await assertRootHolds(server.root, Array.from({ length: count }, (_, i) => `p${i}.bin`));
});

Deno.test("the client reserves a small checksum arena, so it keeps hashing in place where 256 MiB would fail", async () => {
  // V8's cap on WebAssembly memory (about 62 MiB here) stands in for a system that will not
  // commit the server's 256 MiB arena: a client that asked for that much would get none.
  await using server = await startServer();
  await using work = await makeTempDir();
  await writeRandomFile(`${work.path}/up.bin`, 3 * MiB + 12345);
  const client = (args: string[]) =>
    JSON.stringify(["-q", server.host, String(server.port), ...args]);
  const script = `
    import { clientMain } from "./lib/client_cli.ts";
    import { hashArena } from "./lib/xxh3.ts";
    const put = await clientMain(${client(["put", `${work.path}/up.bin`, "up.bin"])});
    const get = await clientMain(${client(["get", "up.bin", `${work.path}/back.bin`])});
    console.log(JSON.stringify({ put, get, arena: hashArena()?.length ?? null }));
  `;
  const printed = await evalUnderV8Flags("--wasm-max-mem-pages=1000", script);
  assert.deepEqual(printed, { put: 0, get: 0, arena: 8 * MiB });
  assert.ok(await filesEqual(`${work.path}/up.bin`, `${server.root}/up.bin`), "uploaded intact");
  assert.ok(await filesEqual(`${work.path}/up.bin`, `${work.path}/back.bin`), "round trip");
});

Deno.test("the IPv6 loopback address works, with or without brackets", async () => {
  await using server = await startServer({ host: "::1" });
  assert.equal(server.host, "::1");
  assert.ok(server.lines.some((line) => line.includes(`[::1]:${server.port}`)), "banner");
  const data = randomBytes(70000);

  const put = await runClient(["::1", String(server.port), "put", "-", "six.bin"], {
    stdin: data,
  });
  assertSuccess(put, "put over IPv6");
  const get = await runClient(["[::1]", String(server.port), "get", "six.bin", "-"]);
  assertSuccess(get, "get over IPv6 with brackets");
  assert.deepEqual(get.stdout, data);
  const list = await runClient(["::1", String(server.port), "list"]);
  assertSuccess(list, "list over IPv6");
  assert.equal(new TextDecoder().decode(list.stdout), "six.bin\n");
  await server.waitForLog(/\[::1\]:\d+ put "six\.bin" 70000 bytes ok/);
});

Deno.test("--help and --version exit 0 on both programs", async () => {
  for (
    const [program, run, name] of [
      ["client", runClient, "ferry"],
      ["server", runServer, "ferry-server"],
    ] as const
  ) {
    for (const flag of ["--help", "-h"]) {
      const help = await run([flag]);
      assert.equal(help.code, 0, `${program} ${flag}: ${help.stderr}`);
      assert.match(new TextDecoder().decode(help.stdout), /^Usage: /, `${program} ${flag}`);
    }
    for (const flag of ["--version", "-V"]) {
      const version = await run([flag]);
      assert.equal(version.code, 0, `${program} ${flag}: ${version.stderr}`);
      assert.match(
        new TextDecoder().decode(version.stdout),
        new RegExp(`^${name} \\d+\\.\\d+\\.\\d+\\n$`),
        `${program} ${flag}`,
      );
    }
  }
});

// ------------------------------------------------------------------ running from another folder

Deno.test("deno task client resolves LOCAL against the folder it is run from, not the repository", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  const here = `${work.path}/sub`;
  await Deno.mkdir(here);
  await Deno.writeTextFile(`${here}/sub.txt`, "from the user's folder\n");
  // As a user's shell would run it; INIT_CWD is deno task's to set (an outer task may have).
  const env = Deno.env.toObject();
  delete env.INIT_CWD;
  const task = (args: string[]): Promise<RunResult> => {
    const config = ["--config", `${REPO_ROOT}deno.json`];
    const client = ["client", server.host, String(server.port), ...args];
    return runCommand(Deno.execPath(), ["task", ...config, ...client], {
      cwd: here,
      clearEnv: true,
      env: { ...env, NO_COLOR: "1" },
    });
  };

  const put = await task(["put", "sub.txt"]);
  assert.equal(put.code, 0, `put from a subfolder: ${put.stderr}`);
  assert.equal(await Deno.readTextFile(`${server.root}/sub.txt`), "from the user's folder\n");
  // README.md exists in the repository; the download must land here all the same.
  assertSuccess(
    await ferry(server, ["put", "-", "README.md"], { stdin: "remote readme\n" }),
    "put",
  );
  const get = await task(["get", "README.md"]);
  assert.equal(get.code, 0, `get into a subfolder: ${get.stderr}`);
  assert.equal(await Deno.readTextFile(`${here}/README.md`), "remote readme\n");
  assert.deepEqual(await listDir(here), ["README.md", "sub.txt"]);
});

// ------------------------------------------------------------------------------ stalled stdin

Deno.test("a put from a stalled stdin reports the server closing it at once, not when stdin moves", async () => {
  await using server = await startServer({ args: ["--idle-timeout", "1"] });
  const child = spawnClient([server.host, String(server.port), "put", "-", "stalled.bin"]);
  const stdin = child.stdin.getWriter();
  let exited = false;
  child.status.then(() => exited = true);
  try {
    await stdin.write(randomBytes(100 * 1024));
    // stdin stays open and silent; the server's idle timeout closes the upload after 1 s.
    await waitFor("the client to report the server's verdict", () => exited, { timeoutMs: 8000 });
  } finally {
    await stdin.close().catch(() => {});
  }
  const result = resultOf(await child.output());
  assertFailure(
    result,
    /^ferry: Server at [\d.]+:\d+ closed the connection: Connection idle for 1 s: closed by the server$/,
    { what: "put from a stalled stdin" },
  );
  await server.waitForLog(/ put "stalled\.bin" \d+ bytes (?!ok)/);
  await assertRootHolds(server.root, []);
});

// ---------------------------------------------------------------------- names from a server

/**
 * A one-connection ferry server on 127.0.0.1 built from lib/protocol.ts frames: it answers the
 * handshake, reads one REQUEST and lets `answer` reply. Returns what the real client did.
 */
function withFakeServer(
  answer: (out: FrameWriter, request: Record<string, unknown>) => Promise<void>,
  args: string[],
): Promise<RunResult> {
  return serveOnce(async (conn) => {
    const frames = new FrameReader(conn);
    const out = new FrameWriter(conn.writable, { direct: conn });
    await frames.readPreamble();
    assert.equal((await frames.readControl())?.type, FrameType.HELLO);
    await out.writeRaw(encodePreamble());
    await out.writeControl(FrameType.WELCOME, { server: "fake/0", features: [] });
    const request = await frames.readControl();
    assert.equal(request?.type, FrameType.REQUEST);
    await answer(out, request!.json);
    // Until the client hangs up, so it never sees the connection cut.
    await frames.discardAll().catch(() => {});
  }, (port) => runClient(["127.0.0.1", String(port), ...args]));
}

/** Answers a list request with `entries`, as the real server does. */
async function sendListing(out: FrameWriter, entries: ListEntry[]): Promise<void> {
  const listing = encodeListing(entries);
  await out.writeControl(FrameType.OK, { size: listing.length });
  await out.writeData(listing);
  await out.writeControl(FrameType.END, {
    size: listing.length,
    checksum: await checksumOf(listing),
  });
}

Deno.test("names from a server that would drive the terminal are listed escaped, one line each", async () => {
  const hostile = [
    "colour\x1b[31mred",
    "c1\u009b2Jclear",
    "gnp.\u202eexe",
    "iso\u2066late\u2069",
    "two\nlines",
    "bell\x07del\x7f",
  ];
  const names = ["plain name.txt", ...hostile];
  const entries = names.map((name, i) => ({ name, size: i, mtime: Date.UTC(2026, 0, 2) }));
  const list = (args: string[]) =>
    withFakeServer(async (out, request) => {
      assert.equal(request.op, "list");
      await sendListing(out, entries);
    }, ["list", ...args]);

  const plain = await list([]);
  assertSuccess(plain, "list");
  const text = decoder.decode(plain.stdout);
  assert.doesNotMatch(text, TERMINAL_CONTROLS, `raw controls in ${JSON.stringify(text)}`);
  const lines = text.split("\n").slice(0, -1);
  assert.equal(lines.length, names.length, "one line per name");
  assert.equal(lines[0], "plain name.txt", "a harmless name is printed as it is");
  // Any other is JSON-quoted with \u escapes, which say exactly what it holds.
  assert.deepEqual(lines.slice(1).map((line) => JSON.parse(line)), hostile);

  const long = await list(["--long"]);
  assertSuccess(long, "list --long");
  const table = decoder.decode(long.stdout);
  assert.doesNotMatch(table, TERMINAL_CONTROLS, `raw controls in ${JSON.stringify(table)}`);
  const rows = table.split("\n").slice(0, -1);
  assert.equal(rows.length, names.length + 1, "one line per name and the total");
  assert.deepEqual(rows.slice(1, -1).map((row) => JSON.parse(row.split("  ").at(-1)!)), hostile);

  const json = await list(["--json"]);
  assertSuccess(json, "list --json");
  const document = decoder.decode(json.stdout);
  assert.doesNotMatch(document, /[\u007f-\u009f\u202a-\u202e\u2066-\u2069]/, document);
  assert.deepEqual(JSON.parse(document).map((e: { name: string }) => e.name), names);
});

Deno.test("a server's refusal that would drive the terminal is printed escaped, on one line", async () => {
  const result = await withFakeServer(async (out, request) => {
    assert.equal(request.op, "get");
    await out.writeControl(FrameType.ERROR, {
      code: "not_found",
      message: "No such file: \u202eexe.txt\u2066\x1b[2J\u2028fake line",
    });
  }, ["get", "x.txt", "-"]);
  assertFailure(result, /^ferry: Refused by server: No such file: /, { what: "refused get" });
  assert.doesNotMatch(result.stderr.slice(0, -1), TERMINAL_CONTROLS, result.stderr);
  assert.match(result.stderr, /\\u202eexe\.txt\\u2066/, "the bidi controls are shown escaped");
});

// ------------------------------------------------------------------------ stdout, the local side

/** The client with stdout sent to /dev/full (a disk that is always full). */
function ferryToDevFull(server: ServerProcess, args: string[]): Promise<RunResult> {
  const deno = [Deno.execPath(), "run", ...PROGRAM_PERMISSIONS];
  const client = [`${REPO_ROOT}client.ts`, server.host, String(server.port), ...args];
  return runCommand("sh", ["-c", 'exec "$@" > /dev/full', "sh", ...deno, ...client], {
    env: { NO_COLOR: "1" },
  });
}

/** The client with its stdout closed after the first bytes, as `| head -c 10` would. */
async function ferryToClosedPipe(server: ServerProcess, args: string[]): Promise<RunResult> {
  const child = spawnClient([server.host, String(server.port), ...args]);
  await child.stdin.close();
  const reader = child.stdout.getReader();
  if (args[0] === "get") await reader.read();
  await reader.cancel();
  const [status, stderr] = await Promise.all([child.status, new Response(child.stderr).text()]);
  return { code: status.code, stdout: new Uint8Array(0), stderr };
}

Deno.test("a closed or full stdout is blamed on stdout, not on the network", async () => {
  await using server = await startServer();
  await writeRandomFile(`${server.root}/big.bin`, 16 * MiB);
  assertSuccess(await ferry(server, ["put", "-", "small.txt"], { stdin: "hello\n" }), "put");

  const closed = /^ferry: Cannot write to stdout: it was closed \(broken pipe\)$/;
  assertFailure(await ferryToClosedPipe(server, ["get", "big.bin", "-"]), closed, {
    what: "get | head",
  });
  assertFailure(await ferryToClosedPipe(server, ["list"]), closed, { what: "list | true" });
  const full = /^ferry: Cannot write to stdout: no space left on device$/;
  assertFailure(await ferryToDevFull(server, ["get", "big.bin", "-"]), full, {
    what: "get > /dev/full",
  });
  assertFailure(await ferryToDevFull(server, ["list", "--long"]), full, {
    what: "list > /dev/full",
  });
});

Deno.test("local file errors say which file and why, without the OS's raw message", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  await Deno.writeTextFile(`${work.path}/a.bin`, "a\n");
  await Deno.mkdir(`${work.path}/folder`);
  assertSuccess(await ferry(server, ["put", "-", "x.bin"], { stdin: "x\n" }), "put x.bin");

  const cwd = { cwd: work.path };
  assertFailure(
    await ferry(server, ["put", "a.bin/"], cwd),
    /^ferry: Cannot read a\.bin\/: not a folder$/,
    { what: "put of a file named with a trailing slash" },
  );
  assertFailure(
    await ferry(server, ["put", "folder"], cwd),
    /^ferry: Cannot upload folder: it is a folder$/,
    { what: "put of a folder" },
  );
  // A folder where the download's .part file would go.
  await Deno.mkdir(`${work.path}/x.bin.part`);
  assertFailure(
    await ferry(server, ["get", "x.bin"], cwd),
    /^ferry: Cannot write x\.bin\.part: it is a folder$/,
    { what: "get with a folder in the way of the .part" },
  );
  assert.equal(await pathExists(`${work.path}/x.bin`), false);
  await assertRootHolds(server.root, ["x.bin"]);
});

Deno.test("get checks LOCAL's folder before asking the server for anything", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  await Deno.writeTextFile(`${work.path}/file.txt`, "a file, not a folder\n");
  assertSuccess(await ferry(server, ["put", "-", "a.bin"], { stdin: randomBytes(300000) }), "put");

  const cases: [string, RegExp][] = [
    ["nodir/x", /^ferry: Cannot write nodir\/x: no such folder nodir$/],
    ["newdir/", /^ferry: Cannot write into newdir\/: no such folder$/],
    ["file.txt/x", /^ferry: Cannot write file\.txt\/x: file\.txt is not a folder$/],
    ["file.txt/", /^ferry: Cannot write into file\.txt\/: not a folder$/],
  ];
  for (const [local, pattern] of cases) {
    assertFailure(await ferry(server, ["get", "a.bin", local], { cwd: work.path }), pattern, {
      what: local,
    });
  }
  assert.deepEqual(await listDir(work.path), ["file.txt"], "nothing was created");
  // A request that does reach the server, logged after any earlier one would have been.
  assertSuccess(await ferry(server, ["list"]), "list");
  await server.waitForLog(/ list /);
  assert.deepEqual(server.lines.filter((line) => / get /.test(line)), [], "no get was sent");
});

// ------------------------------------------------------------------------- TLS and handshakes

/** A server on 127.0.0.1 that answers any connection with `reply` and closes. */
function withRawServer(reply: Uint8Array, args: string[]): Promise<RunResult> {
  return serveOnce(async (conn) => {
    try {
      await conn.read(new Uint8Array(64));
      await conn.write(reply);
    } catch {
      // The client may hang up first; what it did is in its result.
    }
  }, (port) => runClient(["127.0.0.1", String(port), ...args]));
}

Deno.test("--ca with no certificate in the file, and a peer that is not a plain ferry server, fail in one plain line", async () => {
  await using work = await makeTempDir();
  const key = `${work.path}/server.key`;
  await Deno.writeTextFile(
    key,
    "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n",
  );
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  assertFailure(
    await runClient(["127.0.0.1", String(port), "--ca", key, "list"]),
    new RegExp(`^ferry: No certificate in ${key.replaceAll(".", "\\.")}`),
    { what: "--ca given a key" },
  );

  // A TLS alert where the ferry preamble should be: the server wants TLS.
  const tls = await withRawServer(new Uint8Array([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46]), [
    "list",
  ]);
  assertFailure(tls, /^ferry: Server at 127\.0\.0\.1:\d+ answered with TLS; use --tls$/, {
    what: "TLS peer",
  });
  const seed = await withRawServer(new TextEncoder().encode("cancel"), ["list"]);
  assertFailure(seed, /^ferry: Server at .* speaks the seed protocol; try --legacy$/, {
    what: "seed peer",
  });
});

// ----------------------------------------------------------------------------- upload sources

Deno.test("a local read error mid-upload aborts the upload at once and names the file", async () => {
  await using server = await startServer();
  // Opens and stats like a file, but every read fails (EIO): the failure comes after OK. Deno
  // wants --allow-all to open it at all; the read error, not the permission, is under test.
  const result = await runCommand(
    Deno.execPath(),
    ["run", "--allow-all", `${REPO_ROOT}client.ts`, server.host, String(server.port)]
      .concat(["put", "/proc/self/mem", "mem.bin"]),
    { env: { NO_COLOR: "1" } },
  );
  assertFailure(result, /^ferry: Cannot read \/proc\/self\/mem: input\/output error$/, {
    what: "EIO",
  });
  // The server heard it from the client (ABORT), not from a cut connection.
  await server.waitForLog(/ put "mem\.bin" .*Client could not read its file/);
  await assertRootHolds(server.root, []);
});

Deno.test("get into /dev/null or a FIFO writes in place and leaves the device or FIFO there", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  const data = randomBytes(3 * MiB + 5);
  await Deno.writeFile(`${server.root}/d.bin`, data);

  // /dev/null: no --force needed, nothing renamed over it (as root that would replace it).
  for (const force of [[], ["--force"]]) {
    const result = await ferry(server, ["get", "d.bin", "/dev/null", ...force]);
    assertSuccess(result, `get to /dev/null ${force}`);
    const info = await Deno.stat("/dev/null");
    assert.ok(info.isCharDevice, "/dev/null is still a character device");
    // Deno wants --allow-all to look inside /dev, so ask test(1) instead.
    const part = await runCommand("test", ["-e", "/dev/null.part"]);
    assert.equal(part.code, 1, "no /dev/null.part left behind");
  }
  assertUsageError(await ferry(server, ["get", "d.bin", "/dev/null", "--resume"]), "ferry", {
    what: "resume into /dev/null",
  });

  // A FIFO: its reader gets the bytes, and the FIFO stays a FIFO.
  const fifo = `${work.path}/fifo`;
  const made = await runCommand("mkfifo", [fifo]);
  assert.equal(made.code, 0, `mkfifo: ${made.stderr}`);
  const reading = (async () => {
    using reader = await Deno.open(fifo, { read: true });
    const chunks: Uint8Array[] = [];
    const buffer = new Uint8Array(65536);
    for (let n; (n = await reader.read(buffer)) !== null;) chunks.push(buffer.slice(0, n));
    return concat(chunks);
  })();
  assertSuccess(await ferry(server, ["get", "d.bin", fifo]), "get into a FIFO");
  assert.deepEqual(await reading, data);
  assert.ok((await Deno.lstat(fifo)).isFifo, "still a FIFO");
  assert.deepEqual(await listDir(work.path), ["fifo"], "no .part beside it");
});

Deno.test("put streams a FIFO or a process substitution like stdin; a folder or --resume is refused", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  const fifo = `${work.path}/fifo`;
  const made = await runCommand("mkfifo", [fifo]);
  assert.equal(made.code, 0, `mkfifo: ${made.stderr}`);
  const data = randomBytes(3 * MiB + 17);

  const child = spawnClient([server.host, String(server.port), "put", fifo, "fifo.bin"]);
  await child.stdin.close();
  // Opening a FIFO for writing waits for its reader: the client.
  const writer = await Deno.open(fifo, { write: true });
  for (let offset = 0; offset < data.length;) offset += await writer.write(data.subarray(offset));
  writer.close();
  assertSuccess(resultOf(await child.output()), "put FIFO");
  assert.deepEqual(await Deno.readFile(`${server.root}/fifo.bin`), data);

  const substituted = await runCommand("bash", [
    "-c",
    '"$DENO" run --allow-net --allow-read --allow-write "$CLIENT" "$HOST" "$PORT" ' +
    "put <(printf 'made by a command') sub.txt",
  ], {
    env: {
      NO_COLOR: "1",
      DENO: Deno.execPath(),
      CLIENT: `${REPO_ROOT}client.ts`,
      HOST: server.host,
      PORT: String(server.port),
    },
  });
  assert.equal(substituted.code, 0, substituted.stderr);
  assert.equal(await Deno.readTextFile(`${server.root}/sub.txt`), "made by a command");

  // A character device streams too, and like stdin it cannot be resumed.
  assertUsageError(await ferry(server, ["put", "/dev/null", "n.bin", "--resume"]), "ferry", {
    what: "resume",
  });
  assertSuccess(await ferry(server, ["put", "/dev/null", "null.bin"]), "put /dev/null");
  assert.equal((await Deno.stat(`${server.root}/null.bin`)).size, 0);
  await assertRootHolds(server.root, ["fifo.bin", "null.bin", "sub.txt"]);
});
