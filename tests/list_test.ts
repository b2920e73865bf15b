/**
 * Integration tests of the client's `list`: `-r` names sorted one per line without staging
 * files, `--json` with name, size and mtime, and `--long` with a total; a listing of thousands
 * of entries in nested folders, whole and in order; the wire forms of a listing (a JSON entry per
 * line for a client that asks, the JSON array for one that does not); and that the server walks
 * a listing as it sends it instead of building it first.
 *
 * @module
 */

import assert from "node:assert/strict";
import { displayName } from "../lib/format.ts";
import { encodeControl, FrameType } from "../lib/frames.ts";
import { formatListing, ListingWriter } from "../lib/tree_cli.ts";
import { walkListing } from "../lib/tree_listing.ts";
import {
  assertFailure,
  assertSuccess,
  ferry,
  makeTempDir,
  randomBytes,
  runClient,
  runCommand,
  spawnClient,
  STAGING_DIR,
  startServer,
  touchFiles,
} from "./harness.ts";
import { checksumOf, concat, dataFrame, TREE_PEER, Wire, withFakeServer } from "./wire.ts";

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
  // Sizes are right-aligned to a fixed width, known before the listing is; dates are local time,
  // so only their shape is checked.
  const date = "\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d";
  assert.match(lines[0], new RegExp(`^  2\\.00 KiB  ${date}  a b\\.txt$`));
  assert.match(lines[1], new RegExp(`^         -  ${date}  sub/$`));
  assert.match(lines[2], new RegExp(`^       3 B  ${date}  sub/z\\.bin$`));
  assert.equal(lines[3], "2 files, 1 folder, 2.00 KiB");
  assert.equal(lines[4], "");
  assert.equal(lines.length, 5);
});

const decoder = new TextDecoder();

Deno.test("a walk of one folder gives its entries by name, folders among files", async () => {
  const entry = (name: string, type: "file" | "dir") => ({ name, type, size: 0, mtime: 0 });
  const folder = [entry("c", "file"), entry("b", "dir"), entry("a.txt", "file"), entry("0", "dir")];
  const names: string[] = [];
  const listing = walkListing("", () => Promise.resolve({ entries: [...folder], below: [] }));
  for await (const batch of listing) names.push(...batch.map((e) => e.name));
  assert.deepEqual(names, ["0", "a.txt", "b", "c"]);
});

Deno.test("--long's rows: a size too wide for the column widens it from its row on", () => {
  const writer = new ListingWriter({ json: false, long: true });
  const file = (name: string, size: number) => ({ name, type: "file" as const, size, mtime: 0 });
  // Piece by piece, as a listing arrives; 2^70 bytes is past any size a server may send.
  const text = writer.add([file("a", 1), file("b", 2 ** 70)]) + writer.add([file("c", 1)]) +
    writer.end();
  const sizes = text.split("\n").slice(0, 3).map((row) => row.split(/ {2}\d{4}-/)[0]);
  assert.deepEqual(sizes, ["       1 B", "1048576.0 PiB", "          1 B"]);
  assert.match(text, /\n3 files, 1048576\.0 PiB\n$/);
  assert.equal(
    text,
    formatListing([file("a", 1), file("b", 2 ** 70), file("c", 1)], {
      json: false,
      long: true,
    }),
  );
});

Deno.test("list --long prints its rows as they arrive, aligned before the listing has ended", async () => {
  const head = [
    { name: "a.txt", type: "file", size: 3, mtime: 0 },
    { name: "b", type: "dir", size: 0, mtime: 0 },
  ];
  const tail = [{ name: "c.iso", type: "file", size: 5 * 2 ** 40, mtime: 0 }];
  const lines = (entries: typeof head) => entries.map((e) => JSON.stringify(e) + "\n").join("");
  const all = new TextEncoder().encode(lines([...head, ...tail]));
  const firstPart = new TextEncoder().encode(lines(head));
  /** Resolves once the client has printed the first part's rows, the rest still unsent. */
  const printed = Promise.withResolvers<void>();
  const script = async (wire: Wire, request: Record<string, unknown>) => {
    assert.equal(request.op, "list");
    await wire.write(encodeControl(FrameType.OK, { stream: true }));
    await wire.write(dataFrame(firstPart));
    await printed.promise;
    await wire.writeQuietly(dataFrame(all.subarray(firstPart.length)));
    await wire.writeQuietly(
      encodeControl(FrameType.END, { size: all.length, checksum: await checksumOf(all) }),
    );
  };
  const result = await withFakeServer(script, async (port) => {
    const child = spawnClient(["127.0.0.1", String(port), "list", "-r", "--long"]);
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    // Bounded: a client that held its rows until the end would never show them here.
    const deadline = setTimeout(() => printed.reject(new Error("no row before the end")), 15000);
    while (!text.includes("b/\n")) {
      const next = await reader.read();
      if (next.done) break;
      text += next.value;
    }
    clearTimeout(deadline);
    assert.ok(text.includes("b/\n"), "the first rows are printed before the rest is sent");
    assert.doesNotMatch(text, /c\.iso/);
    printed.resolve();
    for (let next = await reader.read(); !next.done; next = await reader.read()) text += next.value;
    const [status, stderr] = await Promise.all([child.status, new Response(child.stderr).text()]);
    return { code: status.code, stdout: new TextEncoder().encode(text), stderr };
  }, TREE_PEER);
  assertSuccess(result, "list --long");
  const rows = decoder.decode(result.stdout).split("\n");
  const date = "\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d";
  // Every size column is as wide as the widest size could be, so rows printed early line up.
  assert.match(rows[0], new RegExp(`^       3 B  ${date}  a\\.txt$`));
  assert.match(rows[1], new RegExp(`^         -  ${date}  b/$`));
  assert.match(rows[2], new RegExp(`^  5\\.00 TiB  ${date}  c\\.iso$`));
  assert.equal(rows[3], "2 files, 1 folder, 5.00 TiB");
  assert.equal(rows.length, 5);
});

/** Names in the order listings give them: by whole name, as JavaScript compares strings. */
function sortedNames(names: string[]): string[] {
  return [...names].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * Makes, under `root`, 30 folders of 3 subfolders of 30 files (2,820 entries), and beside them
 * names that sort between a folder and its contents (`a`, `a-b`, `a.txt`, then `a/x.txt`).
 * Returns every name made, a folder's with a trailing `/`.
 */
async function makeWideTree(root: string): Promise<string[]> {
  const made: string[] = [];
  for (let i = 0; i < 30; i++) {
    const top = `f${String(i).padStart(2, "0")}`;
    made.push(top + "/");
    for (let j = 0; j < 3; j++) {
      const sub = `${top}/s${j}`;
      await Deno.mkdir(`${root}/${sub}`, { recursive: true });
      made.push(sub + "/");
      for (let k = 0; k < 30; k++) {
        await Deno.writeFile(`${root}/${sub}/file ${k}.txt`, new Uint8Array(k % 3));
        made.push(`${sub}/file ${k}.txt`);
      }
    }
  }
  await Deno.mkdir(`${root}/a`);
  await Deno.writeTextFile(`${root}/a/x.txt`, "x");
  for (const name of ["a-b", "a.txt", "a0"]) await Deno.writeTextFile(`${root}/${name}`, name);
  made.push("a/", "a/x.txt", "a-b", "a.txt", "a0");
  return made;
}

/** A name as `list` prints it: `/` after a folder's, sorted as its name without it. */
function printed(names: string[]): string {
  const byName = new Map(names.map((n) => [n.replace(/\/$/, ""), n]));
  return sortedNames([...byName.keys()]).map((name) => byName.get(name) + "\n").join("");
}

Deno.test("list -r of thousands of entries in nested folders arrives whole, sorted by name", async () => {
  await using server = await startServer();
  const made = await makeWideTree(server.root);
  assert.equal(made.length, 2825);

  const listed = await ferry(server, ["list", "-r"]);
  assertSuccess(listed, "list -r");
  // The folder `a` and what it holds are apart: `a-b` and `a.txt` sort between them.
  assert.equal(decoder.decode(listed.stdout), printed(made));
  assert.match(decoder.decode(listed.stdout), /^a\/\na-b\na\.txt\na\/x\.txt\na0\nf00\/\n/);

  const json = await ferry(server, ["list", "-r", "--json"]);
  assertSuccess(json, "list -r --json");
  const entries = JSON.parse(decoder.decode(json.stdout));
  assert.deepEqual(
    entries.map((e: { name: string; type: string }) => e.name + (e.type === "dir" ? "/" : "")),
    printed(made).split("\n").slice(0, -1),
  );
  const one = entries.find((e: { name: string }) => e.name === "f07/s1/file 4.txt");
  assert.deepEqual([one.type, one.size], ["file", 1]);

  // One folder, and one folder recursively.
  const folder = await ferry(server, ["list", "f03"]);
  assertSuccess(folder, "list f03");
  assert.equal(decoder.decode(folder.stdout), "f03/s0/\nf03/s1/\nf03/s2/\n");
  const subtree = await ferry(server, ["list", "-r", "f03/s2"]);
  assertSuccess(subtree, "list -r f03/s2");
  assert.equal(
    decoder.decode(subtree.stdout),
    printed(made.filter((n) => n.startsWith("f03/s2/") && n !== "f03/s2/")),
  );
  // An empty listing in JSON is still an array.
  await Deno.mkdir(`${server.root}/empty`);
  const none = await ferry(server, ["list", "empty", "--json"]);
  assertSuccess(none, "list empty --json");
  assert.equal(decoder.decode(none.stdout), "[]\n");
});

/** Sends one REQUEST on `wire`; returns OK's JSON and the data phase's bytes, checked against END. */
async function rawListing(wire: Wire, request: Record<string, unknown>) {
  await wire.write(encodeControl(FrameType.REQUEST, request));
  const ok = await wire.expectFrame(FrameType.OK, JSON.stringify(request));
  const parts: Uint8Array[] = [];
  for (;;) {
    const frame = await wire.readFrame();
    assert.ok(frame, "the listing ended before END");
    if (frame.type === FrameType.DATA) {
      parts.push(frame.payload);
      continue;
    }
    assert.equal(frame.type, FrameType.END, `got frame ${frame.type}`);
    const data = concat(parts);
    assert.deepEqual(frame.json, { size: data.length, checksum: await checksumOf(data) });
    return { ok, text: decoder.decode(data) };
  }
}

Deno.test("the wire: a JSON entry per line for a client that asks, the whole array otherwise", async () => {
  await using server = await startServer();
  await Deno.mkdir(`${server.root}/d/sub`, { recursive: true });
  await Deno.writeTextFile(`${server.root}/d/e.txt`, "eee");
  await Deno.writeTextFile(`${server.root}/f.txt`, "f");
  using wire = await Wire.connect(server);
  await wire.handshake();

  const streamed = await rawListing(wire, { op: "list", recursive: true, stream: true });
  assert.equal(streamed.ok.stream, true);
  assert.ok(streamed.text.endsWith("\n"));
  const lines = streamed.text.slice(0, -1).split("\n").map((line) => JSON.parse(line));
  assert.deepEqual(
    lines.map((e) => [e.name, e.type, e.size]),
    [["d", "dir", 0], ["d/e.txt", "file", 3], ["d/sub", "dir", 0], ["f.txt", "file", 1]],
  );

  // A client that predates streaming (no `stream`) gets the JSON array it always got.
  const whole = await rawListing(wire, { op: "list", recursive: true });
  assert.equal(whole.ok.stream, undefined);
  assert.deepEqual(JSON.parse(whole.text), lines);
  assert.equal(whole.text, JSON.stringify(lines));
  const one = await rawListing(wire, { op: "list", recursive: false, dir: "d" });
  assert.deepEqual(JSON.parse(one.text).map((e: { name: string }) => e.name), ["d/e.txt", "d/sub"]);

  // And one that predates folders, the files only, without types.
  const flat = await rawListing(wire, { op: "list" });
  assert.deepEqual(
    JSON.parse(flat.text),
    lines.filter((e) => e.type === "file").map(({ type: _, ...file }) => file),
  );

  // A missing folder is refused before anything is listed; the connection stays usable.
  await wire.write(encodeControl(FrameType.REQUEST, { op: "list", recursive: true, dir: "no" }));
  const refused = await wire.expectFrame(FrameType.ERROR, "list of a missing folder");
  assert.equal(refused.code, "not_found");
  const again = await rawListing(wire, { op: "list", recursive: false, stream: true });
  assert.equal(again.text.split("\n").length, 3);
});

Deno.test("the server sends a listing as it walks it: a folder listed late is read late", async () => {
  await using server = await startServer();
  // Entries with names of over 3,700 bytes: a chain of 14 folders with long names, 12,000 files
  // at its end (about 45 MB of listing), more than the sockets' buffers can hold between the
  // server and a client that does not read, even grown to Linux's largest by default (4 MiB to
  // send, 32 MiB to receive). Then `zzz`, which sorts last.
  const segment = (c: string) => c.repeat(250);
  const chain = Array.from({ length: 14 }, (_, i) => segment(String.fromCharCode(97 + i)));
  const deep = `${server.root}/${chain.join("/")}`;
  await Deno.mkdir(deep, { recursive: true });
  const files = 12_000;
  await touchFiles(
    deep,
    Array.from({ length: files }, (_, i) => `${String(i).padStart(6, "0")}${"f".repeat(240)}`),
  );
  await Deno.mkdir(`${server.root}/zzz`);

  using wire = await Wire.connect(server);
  await wire.handshake();
  await wire.write(encodeControl(FrameType.REQUEST, { op: "list", recursive: true, stream: true }));
  assert.equal((await wire.expectFrame(FrameType.OK, "list")).stream, true);
  const first = await wire.readFrame();
  assert.equal(first?.type, FrameType.DATA);
  assert.ok(decoder.decode(first!.payload).startsWith(`{"name":"${chain[0]}","type":"dir"`));

  // The server has sent its first entries, and cannot have walked past the chain's files, which
  // wait for this client to read them: a file made in `zzz` now is listed when it gets there. A
  // server that built the listing before it sent any of it would not list it.
  await Deno.writeTextFile(`${server.root}/zzz/late.txt`, "late");
  let rest = "";
  let count = 0;
  const lines: string[] = [];
  const take = (text: string) => {
    rest += text;
    const parts = rest.split("\n");
    rest = parts.pop()!;
    count += parts.length;
    // Only the last few are kept.
    lines.push(...parts.slice(-2));
    lines.splice(0, Math.max(0, lines.length - 2));
  };
  take(decoder.decode(first!.payload));
  for (;;) {
    const frame = await wire.readFrame();
    assert.ok(frame, "the listing ended before END");
    if (frame.type !== FrameType.DATA) {
      assert.equal(frame.type, FrameType.END);
      break;
    }
    take(decoder.decode(frame.payload));
  }
  assert.equal(rest, "");
  assert.equal(count, chain.length + files + 2);
  assert.deepEqual(lines.map((line) => JSON.parse(line).name), ["zzz", "zzz/late.txt"]);
});

/** A fake server's answer to a list: OK `ok`, then `data` in DATA frames of `piece`, then END. */
function answerList(ok: Record<string, unknown>, data: string, piece = 7) {
  return async (wire: Wire, request: Record<string, unknown>) => {
    assert.equal(request.op, "list");
    assert.equal(request.stream, true, "the client asks for the lines");
    await wire.write(encodeControl(FrameType.OK, ok));
    const bytes = new TextEncoder().encode(data);
    // Quietly: a client that refuses the data hangs up while it is still being sent.
    for (let i = 0; i < bytes.length; i += piece) {
      await wire.writeQuietly(dataFrame(bytes.subarray(i, i + piece)));
    }
    await wire.writeQuietly(
      encodeControl(FrameType.END, { size: bytes.length, checksum: await checksumOf(bytes) }),
    );
  };
}

Deno.test("the client takes lines from a new server, an array from an old one, and refuses bad lines", async () => {
  const entries = [
    { name: "d", type: "dir", size: 0, mtime: 0 },
    { name: "d/\u001b[31mred", type: "file", size: 5, mtime: 0 },
  ];
  const lines = entries.map((e) => JSON.stringify(e) + "\n").join("");
  const run = (args: string[]) => (port: number) =>
    runClient(["127.0.0.1", String(port), "list", "-r", ...args]);
  // Lines cut anywhere by the frames, names escaped as ever.
  const streamed = await withFakeServer(answerList({ stream: true }, lines), run([]), TREE_PEER);
  assertSuccess(streamed, "list from a streaming server");
  assert.equal(decoder.decode(streamed.stdout), 'd/\n"d/\\u001b[31mred"\n');
  // A server that predates streamed listings ignores the field and sends its array.
  const old = await withFakeServer(
    answerList({ size: 0 }, JSON.stringify(entries)),
    run(["--json"]),
    TREE_PEER,
  );
  assertSuccess(old, "list from an older server");
  assert.deepEqual(
    JSON.parse(decoder.decode(old.stdout)).map((e: { name: string }) => e.name),
    entries.map((e) => e.name),
  );
  for (
    const [what, data] of [
      ["an entry of an unknown type", '{"name":"x","type":"link","size":0,"mtime":0}\n'],
      ["a line that is not JSON", "x\n"],
      ["a last line cut short", lines + '{"name":"y"'],
      ["a line over 1 MiB", "{" + " ".repeat(1.5 * 2 ** 20)],
    ] as const
  ) {
    const refused = await withFakeServer(
      answerList({ stream: true }, data, 64 << 10),
      run([]),
      TREE_PEER,
    );
    // What arrived whole before the fault is printed already, as with any stream.
    assertFailure(refused, /Malformed listing/, { what, allowStdout: what.includes("cut") });
  }
});

Deno.test("list into a reader that stops early (| head) ends quietly, with exit 0", async () => {
  await using server = await startServer();
  await Deno.mkdir(`${server.root}/many`);
  // Far more than a pipe holds, so the client is still writing when its reader goes.
  for (let i = 0; i < 6000; i++) {
    await Deno.writeFile(`${server.root}/many/${"x".repeat(40)}${i}`, new Uint8Array(0));
  }
  for (const extra of [[], ["--json"]]) {
    const child = spawnClient([server.host, String(server.port), "list", "many", ...extra]);
    const reader = child.stdout.getReader();
    const first = await reader.read();
    assert.ok(!first.done && first.value.length > 0, "the listing begins");
    await reader.cancel();
    const [status, stderr] = await Promise.all([
      child.status,
      new Response(child.stderr).text(),
    ]);
    assert.equal(stderr, "", `nothing said on stderr (${extra.join(" ")})`);
    assert.equal(status.code, 0);
  }
  // A download to stdout still says it did not finish (it is not a listing).
  await Deno.writeFile(`${server.root}/big.bin`, randomBytes(4 << 20));
  const child = spawnClient([server.host, String(server.port), "get", "big.bin", "-"]);
  const reader = child.stdout.getReader();
  await reader.read();
  await reader.cancel();
  const [status, stderr] = await Promise.all([child.status, new Response(child.stderr).text()]);
  assert.equal(status.code, 1);
  assert.match(stderr, /Cannot write to stdout: it was closed \(broken pipe\)/);
});

/** The names of `list --long`'s rows (its size and date columns cut off), without its total. */
function longNames(text: string): string[] {
  // Size (10 wide), two spaces, date (16), two spaces: no size here is wider than its column.
  return text.trimEnd().split("\n").slice(0, -1).map((row) => row.slice(30));
}

Deno.test("plain list asks for names alone and gives exactly the names and marks of list --long", async () => {
  await using outside = await makeTempDir();
  await Deno.mkdir(`${outside.path}/far`);
  await Deno.writeTextFile(`${outside.path}/far.txt`, "far");
  await using server = await startServer();
  const root = server.root;
  await Deno.mkdir(`${root}/sub/deep`, { recursive: true });
  await Deno.mkdir(`${root}/empty`);
  await Deno.writeTextFile(`${root}/a.txt`, "a");
  await Deno.writeTextFile(`${root}/sub/b.txt`, "bb");
  await Deno.writeTextFile(`${root}/sub/deep/c.txt`, "ccc");
  await Deno.writeTextFile(`${root}/red\u001b[31m.txt`, "red");
  // Symlinks: to a file inside (listed as a file), to a folder inside (left out, yet followed
  // when asked for by name), out of the root, broken, looping, and into a private folder.
  await Deno.symlink("a.txt", `${root}/link-in`);
  await Deno.symlink("../a.txt", `${root}/sub/link-up`);
  await Deno.symlink("sub", `${root}/link-dir`);
  await Deno.symlink(`${outside.path}/far.txt`, `${root}/link-out`);
  await Deno.symlink(`${outside.path}/far`, `${root}/link-out-dir`);
  await Deno.symlink("nowhere", `${root}/broken`);
  await Deno.symlink("loop", `${root}/loop`);
  await Deno.writeTextFile(`${root}/${STAGING_DIR}/staged.upload`, "s");
  await Deno.symlink(`${STAGING_DIR}/staged.upload`, `${root}/link-private`);
  const fifo = await runCommand("mkfifo", [`${root}/fifo`, `${root}/sub/fifo2`]);
  assert.equal(fifo.code, 0, fifo.stderr);

  const list = async (args: string[]) => {
    const result = await ferry(server, ["list", ...args]);
    assertSuccess(result, `list ${args.join(" ")}`);
    return decoder.decode(result.stdout);
  };
  for (const args of [[], ["-r"], ["sub"], ["-r", "sub"], ["link-dir"], ["empty"]]) {
    const plain = await list(args);
    const long = longNames(await list([...args, "--long"]));
    assert.deepEqual(plain === "" ? [] : plain.trimEnd().split("\n"), long, args.join(" "));
    const json = JSON.parse(await list([...args, "--json"])) as { name: string; type: string }[];
    assert.deepEqual(
      long,
      json.map((e) => displayName(e.name) + (e.type === "dir" ? "/" : "")),
      `${args.join(" ")} --json`,
    );
  }
  assert.equal(
    await list(["-r"]),
    [
      "a.txt",
      "empty/",
      "link-in",
      '"red\\u001b[31m.txt"',
      "sub/",
      "sub/b.txt",
      "sub/deep/",
      "sub/deep/c.txt",
      "sub/link-up",
    ].join("\n") + "\n",
  );
});

Deno.test("the wire: a names-only listing is offered in WELCOME and carries names and types alone", async () => {
  await using server = await startServer();
  await Deno.mkdir(`${server.root}/d/sub`, { recursive: true });
  await Deno.writeTextFile(`${server.root}/d/e.txt`, "eee");
  await Deno.writeTextFile(`${server.root}/f.txt`, "f");
  await Deno.symlink("f.txt", `${server.root}/g`);
  using wire = await Wire.connect(server);
  const welcome = await wire.handshake();
  assert.ok((welcome.features as string[]).includes("list-names"), "the feature is named");

  for (const recursive of [true, false]) {
    const full = await rawListing(wire, { op: "list", recursive, stream: true });
    const names = await rawListing(wire, { op: "list", recursive, stream: true, names_only: true });
    assert.equal(names.ok.stream, true);
    const lines = names.text.trimEnd().split("\n").map((line) => JSON.parse(line));
    assert.deepEqual(
      lines,
      full.text.trimEnd().split("\n").map((line) => {
        const { name, type } = JSON.parse(line);
        return { name, type };
      }),
    );
    assert.ok(lines.some((e) => e.name === "g" && e.type === "file"), "the link is a file");
    // The array form, for a client that does not ask for lines, the same way.
    const whole = await rawListing(wire, { op: "list", recursive, names_only: true });
    assert.deepEqual(JSON.parse(whole.text), lines);
  }
  // A flag that is not a boolean is a malformed request, as any other.
  await wire.write(
    encodeControl(FrameType.REQUEST, { op: "list", recursive: true, names_only: "yes" }),
  );
  const refused = await wire.expectFrame(FrameType.ERROR, "a names_only that is no boolean");
  assert.equal(refused.code, "bad_request");
});

Deno.test("the client asks for names alone only where offered, and refuses sizes or a wrong shape in reply", async () => {
  const NAMES_PEER = { welcome: { server: "evil/2", features: ["tree", "list-names"] } };
  const run = (args: string[]) => (port: number) =>
    runClient(["127.0.0.1", String(port), "list", "-r", ...args]);
  const answer = (names: boolean, data: string) => {
    const send = answerList({ stream: true }, data);
    return async (wire: Wire, request: Record<string, unknown>) => {
      assert.equal(request.names_only, names ? true : undefined, "names_only asked for");
      await send(wire, request);
    };
  };
  const named = '{"name":"d","type":"dir"}\n{"name":"d/\\u001b[31mred","type":"file"}\n' +
    '{"name":"d/bad\ufffd","type":"file","notUtf8":true}\n';
  const good = await withFakeServer(answer(true, named), run([]), NAMES_PEER);
  assertSuccess(good, "names alone from a server that offers them");
  assert.equal(decoder.decode(good.stdout), 'd/\n"d/\\u001b[31mred"\n"d/bad\\ufffd" (not UTF-8)\n');

  // A server that does not offer it is not asked, and its full entries are taken.
  const full = '{"name":"d","type":"dir","size":0,"mtime":0}\n' +
    '{"name":"d/x","type":"file","size":5,"mtime":0}\n';
  const older = await withFakeServer(answer(false, full), run([]), TREE_PEER);
  assertSuccess(older, "full entries from a server without the feature");
  assert.equal(decoder.decode(older.stdout), "d/\nd/x\n");
  // --long and --json ask for everything, from any server.
  const long = await withFakeServer(answer(false, full), run(["--long"]), NAMES_PEER);
  assertSuccess(long, "list --long from a server that offers names alone");
  assert.match(decoder.decode(long.stdout), /5 B .* d\/x\n1 file, 1 folder, 5 B\n$/);

  for (
    const [what, data] of [
      ["sizes", full],
      ["a size alone", '{"name":"x","type":"file","size":5}\n'],
      ["an mtime alone", '{"name":"x","type":"file","mtime":0}\n'],
      ["another field", '{"name":"x","type":"file","owner":"root"}\n'],
      ["an unknown type", '{"name":"x","type":"link"}\n'],
      ["no type", '{"name":"x"}\n'],
      ["a name that is no string", '{"name":7,"type":"file"}\n'],
      ["notUtf8 that is not true", '{"name":"x","type":"file","notUtf8":1}\n'],
      ["an array", '["x","file"]\n'],
    ] as const
  ) {
    const refused = await withFakeServer(answer(true, data), run([]), NAMES_PEER);
    assertFailure(refused, /Malformed listing/, { what });
  }
});
