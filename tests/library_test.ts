/**
 * Tests of ferry as a library: everything goes through mod.ts, the module others import, against
 * a real server started with mod.ts's startServer on port 0 with a temporary root.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  connect,
  ProtocolError,
  RefusedError,
  type RunningServer,
  startServer,
  UserError,
  VERSION,
} from "../mod.ts";
import {
  assertRootHolds,
  closedPort,
  makeTempDir,
  randomBytes,
  type TempDir,
  waitFor,
} from "./harness.ts";

const MiB = 1 << 20;

interface Served extends AsyncDisposable {
  server: RunningServer;
  root: string;
  lines: string[];
}

async function serve(options: { token?: Uint8Array } = {}): Promise<Served> {
  const dir: TempDir = await makeTempDir();
  const root = `${dir.path}/root`;
  const lines: string[] = [];
  const server = await startServer({ root, port: 0, log: (line) => lines.push(line), ...options });
  return {
    server,
    root,
    lines,
    async [Symbol.asyncDispose]() {
      await server.close();
      await dir[Symbol.asyncDispose]();
    },
  };
}

/** A stream of `bytes` in pieces of `piece` bytes, as a caller's generator would give it. */
function piecesOf(bytes: Uint8Array, piece: number): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream({
    pull(controller) {
      if (offset >= bytes.length) return controller.close();
      controller.enqueue(bytes.slice(offset, offset + piece));
      offset += piece;
    },
  });
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

Deno.test("the library puts a stream and gets it back as a stream, through a server it started", async () => {
  await using served = await serve();
  const data = randomBytes(3 * MiB + 4321);
  const session = await connect("127.0.0.1", served.server.addr.port);
  try {
    assert.equal(session.welcome?.server.startsWith("ferry/"), true, "handshake done");
    // No size: a stream of unknown length, in uneven pieces.
    const put = await session.put(piecesOf(data, 100_003), "dir/big.bin");
    assert.equal(put.size, data.length);
    assert.match(put.checksum, /^xxh128:[0-9a-f]{32}$/);
    assert.deepEqual(await Deno.readFile(`${served.root}/dir/big.bin`), data, "stored intact");

    const stream = await session.getStream("dir/big.bin");
    assert.deepEqual(await readAll(stream), data, "streamed back intact");

    const listed = await session.list();
    assert.deepEqual(listed.map((entry) => [entry.name, entry.size]), [
      ["dir/big.bin", data.length],
    ]);
  } finally {
    session.close();
  }
  await assertRootHolds(served.root, ["dir"]);
});

Deno.test("a slow stream reader gets every byte, and a request made meanwhile waits its turn", async () => {
  await using served = await serve();
  const data = randomBytes(5 * MiB + 17);
  await Deno.writeFile(`${served.root}/slow.bin`, data);
  const session = await connect("127.0.0.1", served.server.addr.port);
  try {
    const reader = (await session.getStream("slow.bin")).getReader();
    // Not awaited: it must not interleave its frames with the download still under way.
    const put = session.put(ReadableStream.from([new Uint8Array([1, 2, 3])]), "after.bin");
    const parts: Uint8Array<ArrayBuffer>[] = [];
    let received = 0;
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      parts.push(value);
      received += value.length;
      // A reader slower than the network: the stream holds back, and nothing is lost.
      if (parts.length % 2 === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    }
    assert.equal(received, data.length);
    assert.deepEqual(new Uint8Array(await new Blob(parts).arrayBuffer()), data);
    assert.equal((await put).size, 3);
    assert.deepEqual(await Deno.readFile(`${served.root}/after.bin`), new Uint8Array([1, 2, 3]));
  } finally {
    session.close();
  }
});

Deno.test("a refused get rejects before any stream exists, and the session goes on", async () => {
  await using served = await serve();
  const session = await connect("127.0.0.1", served.server.addr.port);
  try {
    await assert.rejects(
      session.getStream("missing.bin"),
      (error) => error instanceof RefusedError && error.code === "not_found",
    );
    await Deno.writeTextFile(`${served.root}/there.txt`, "still here");
    const text = await new Response(await session.getStream("there.txt")).text();
    assert.equal(text, "still here");
    await assert.rejects(
      session.put(ReadableStream.from([new Uint8Array(1)]), "there.txt"),
      (error) => error instanceof RefusedError && error.code === "exists",
    );
  } finally {
    session.close();
  }
  assert.equal(await Deno.readTextFile(`${served.root}/there.txt`), "still here");
});

Deno.test("cancelling a download stream closes the session, and the server is left clean", async () => {
  await using served = await serve();
  await Deno.writeFile(`${served.root}/big.bin`, randomBytes(8 * MiB));
  const session = await connect("127.0.0.1", served.server.addr.port);
  const reader = (await session.getStream("big.bin")).getReader();
  assert.ok(!(await reader.read()).done, "some bytes arrived");
  await reader.cancel();
  await assert.rejects(session.list(), (error) => !(error instanceof RefusedError));
  await waitFor(
    "the server to log the cut download",
    () => served.lines.some((line) => line.includes("big.bin")),
  );
  await assertRootHolds(served.root, ["big.bin"]);
});

Deno.test("a failed put of a stream leaves nothing on the server", async () => {
  await using served = await serve();
  const session = await connect("127.0.0.1", served.server.addr.port);
  try {
    let sent = 0;
    const failing = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= 2 * MiB) return controller.error(new Error("source broke"));
        controller.enqueue(randomBytes(256 * 1024));
        sent += 256 * 1024;
      },
    });
    await assert.rejects(session.put(failing, "half.bin"), /source broke/);
  } finally {
    session.close();
  }
  await waitFor(
    "the server to drop the upload",
    () => served.lines.some((line) => line.includes("half.bin")),
  );
  await assertRootHolds(served.root, []);
});

Deno.test("the library's errors are typed: no server, and a server that wants a token", async () => {
  await assert.rejects(connect("127.0.0.1", await closedPort()), UserError);

  await using served = await serve({ token: new TextEncoder().encode("sesame") });
  await assert.rejects(connect("127.0.0.1", served.server.addr.port), UserError);
  const wrong = connect("127.0.0.1", served.server.addr.port, {
    token: new TextEncoder().encode("not it"),
  });
  await assert.rejects(wrong, (error) => error instanceof RefusedError);
  const session = await connect("127.0.0.1", served.server.addr.port, {
    token: new TextEncoder().encode("sesame"),
  });
  session.close();
  assert.ok(ProtocolError.prototype instanceof Error);
  assert.match(VERSION, /^\d+\.\d+\.\d+/);
});

Deno.test("listEntries yields list()'s entries one at a time; breaking off leaves the session usable", async () => {
  await using served = await serve();
  // More than one batch of the listing (1,024 entries), in two folders.
  const names: string[] = [];
  for (const folder of ["a", "b"]) {
    await Deno.mkdir(`${served.root}/${folder}`, { recursive: true });
    for (let i = 0; i < 1500; i++) {
      const name = `${folder}/f${String(i).padStart(4, "0")}`;
      await Deno.writeFile(`${served.root}/${name}`, new Uint8Array(i % 3));
      names.push(name);
    }
  }
  const session = await connect("127.0.0.1", served.server.addr.port);
  try {
    const streamed = [];
    for await (const entry of session.listEntries()) streamed.push(entry);
    const listed = await session.list();
    assert.equal(streamed.length, names.length);
    assert.deepEqual(
      streamed.map((e) => [e.name, e.size, e.mtime, e.type]),
      listed.map((e) => [e.name, e.size, e.mtime, "file"]),
      "the same entries as list(), in the same order",
    );
    // One folder's own entries, folders included, or a subtree.
    const top = [];
    for await (const entry of session.listEntries({ recursive: false, folders: true })) {
      top.push(`${entry.name}:${entry.type}`);
    }
    assert.deepEqual(top, ["a:dir", "b:dir"]);
    let count = 0;
    for await (const entry of session.listEntries({ dir: "b" })) {
      assert.ok(entry.name.startsWith("b/"), entry.name);
      count++;
    }
    assert.equal(count, 1500);
    // Broken off after a few: the rest is dropped, and the next request gets its own answer.
    let seen = 0;
    for await (const _ of session.listEntries()) if (++seen === 3) break;
    assert.equal(seen, 3);
    assert.equal((await session.list()).length, names.length, "the session still answers");
    // A missing folder is refused when the loop starts.
    await assert.rejects(async () => {
      for await (const _ of session.listEntries({ dir: "nothere" })) { /* nothing */ }
    }, (error) => error instanceof RefusedError && error.code === "not_found");
    assert.equal((await session.list()).length, names.length, "and after a refusal too");
  } finally {
    session.close();
  }
});

Deno.test("listEntries with namesOnly gives the full listing's names and types, sizes and times 0", async () => {
  await using served = await serve();
  await Deno.mkdir(`${served.root}/a/b`, { recursive: true });
  await Deno.mkdir(`${served.root}/empty`);
  for (const name of ["top.txt", "a/one.bin", "a/b/two.bin"]) {
    await Deno.writeFile(`${served.root}/${name}`, new Uint8Array(100));
  }
  // A symlink to a file inside is listed as a file; one leading out, and one to a folder, not.
  await Deno.symlink("../top.txt", `${served.root}/a/link.txt`);
  await Deno.symlink("../../..", `${served.root}/a/b/out`);
  await Deno.symlink("b", `${served.root}/a/folder-link`);
  const session = await connect("127.0.0.1", served.server.addr.port);
  try {
    assert.ok(session.welcome?.features.includes("list-names"), "the server offers it");
    for (const recursive of [true, false]) {
      for (const dir of [undefined, "a"]) {
        const full = [];
        for await (const entry of session.listEntries({ dir, recursive, folders: true })) {
          full.push(entry);
        }
        const names = [];
        for await (
          const e of session.listEntries({ dir, recursive, folders: true, namesOnly: true })
        ) {
          names.push(e);
        }
        const where = `recursive ${recursive}, dir ${dir}`;
        assert.deepEqual(
          names.map((e) => [e.name, e.type]),
          full.map((e) => [e.name, e.type]),
          `the same names and types as the full listing (${where})`,
        );
        assert.ok(full.some((e) => e.size === 100), `the full listing has sizes (${where})`);
        assert.ok(names.every((e) => e.size === 0 && e.mtime === 0), `names only (${where})`);
      }
    }
    const files = [];
    for await (const entry of session.listEntries({ namesOnly: true })) files.push(entry.name);
    assert.deepEqual(files, ["a/b/two.bin", "a/link.txt", "a/one.bin", "top.txt"]);
  } finally {
    session.close();
  }
});
