/**
 * Folders in the S3 store, against a real object store (see tests/s3_harness.ts): listing, mkdir,
 * rm and mv (with two servers racing for one new name), put -r and get -r, mput and mget.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { encodeControl, FrameType } from "../lib/frames.ts";
import { assertFailure, assertSuccess, ferry, makeTempDir, randomBytes } from "./harness.ts";
import { concat, Wire } from "./wire.ts";
import {
  countKeys,
  endpoint,
  headers,
  holdStore,
  ignore,
  newBucket,
  okText,
  PART,
  putMany,
  s3,
  stagingKeys,
  startS3Server,
} from "./s3_harness.ts";
import { summaryOf } from "./tree_helpers.ts";

Deno.test({
  name: "s3: listing shows the files under the prefix, sorted, and nothing of the server's own",
  ignore,
  async fn() {
    using _store = await holdStore();
    const bucket = await newBucket();
    await using a = await startS3Server(bucket);
    // `a-b` and `a.txt` sort between the folder `a` and what it holds, as on a disk.
    for (const name of ["b.txt", "a/z.txt", "a/b c.txt", "ü.txt", "a-b", "a.txt"]) {
      assertSuccess(await ferry(a, ["put", "-", name], { stdin: name }), `put ${name}`);
    }
    // Objects other tools wrote: outside the prefix, a folder marker, a name no client could ask
    // for, and what looks like the server's own staging.
    for (
      const key of ["elsewhere.txt", "files/folder/", "files/bad%01name", "files/.ferry-staging/x"]
    ) {
      const response = await s3.fetch(`${endpoint}/${bucket}/${key}`, { method: "PUT", body: "-" });
      await response.body?.cancel();
    }
    const listing = await ferry(a, ["list"]);
    assertSuccess(listing, "list");
    // Another tool's folder marker is a folder, as one made by mkdir.
    assert.equal(
      new TextDecoder().decode(listing.stdout),
      "a/\na-b\na.txt\nb.txt\nfolder/\nü.txt\n",
    );
    const all = await ferry(a, ["list", "-r"]);
    assertSuccess(all, "list -r");
    assert.equal(
      new TextDecoder().decode(all.stdout),
      "a/\na-b\na.txt\na/b c.txt\na/z.txt\nb.txt\nfolder/\nü.txt\n",
    );
    // In a recursive listing a folder has its marker's time.
    const json = JSON.parse(
      new TextDecoder().decode((await ferry(a, ["list", "-r", "--json"])).stdout),
    );
    const marked = json.find((e: { name: string }) => e.name === "folder");
    assert.ok(
      Date.parse(marked.mtime) > Date.parse("2020-01-01"),
      `folder's mtime ${marked.mtime}`,
    );
    // The original listing, for clients that predate folders: the same walk's files.
    using wire = await Wire.connect(a);
    await wire.handshake();
    await wire.write(encodeControl(FrameType.REQUEST, { op: "list" }));
    await wire.expectFrame(FrameType.OK, "original list");
    const parts: Uint8Array[] = [];
    let frame = await wire.readFrame();
    for (; frame?.type === FrameType.DATA; frame = await wire.readFrame()) {
      parts.push(frame.payload);
    }
    assert.equal(frame?.type, FrameType.END);
    assert.deepEqual(
      JSON.parse(new TextDecoder().decode(concat(parts))).map((e: { name: string }) => e.name),
      ["a-b", "a.txt", "a/b c.txt", "a/z.txt", "b.txt", "ü.txt"],
    );
  },
});

Deno.test({
  name: "s3: folders: mkdir through one server, list and list -r through the other",
  ignore,
  async fn() {
    using _store = await holdStore();
    const bucket = await newBucket();
    await using a = await startS3Server(bucket);
    await using b = await startS3Server(bucket);
    await okText(a, ["mkdir", "empty"]);
    await okText(a, ["mkdir", "-p", "sub/deep"]);
    await okText(a, ["put", "-", "sub/b.txt"]);
    assertSuccess(await ferry(a, ["put", "-", "a.txt"], { stdin: "aaa" }), "put a.txt");
    assertSuccess(await ferry(a, ["put", "-", "sub/deep/c.txt"], { stdin: "c" }), "put c");
    // An empty folder is kept by a marker object.
    assert.ok(await headers(bucket, "files/empty/"), "marker of the empty folder");
    assert.equal(await okText(b, ["list"]), "a.txt\nempty/\nsub/\n");
    assert.equal(await okText(b, ["list", "sub"]), "sub/b.txt\nsub/deep/\n");
    assert.equal(await okText(b, ["list", "empty"]), "");
    assert.equal(
      await okText(b, ["list", "-r"]),
      "a.txt\nempty/\nsub/\nsub/b.txt\nsub/deep/\nsub/deep/c.txt\n",
    );
    assert.equal(await okText(b, ["list", "-r", "sub"]), "sub/b.txt\nsub/deep/\nsub/deep/c.txt\n");
    const json = JSON.parse(await okText(b, ["list", "-r", "--json"]));
    assert.deepEqual(
      json.map((e: Record<string, unknown>) => [e.name, e.type, e.size]),
      [
        ["a.txt", "file", 3],
        ["empty", "dir", 0],
        ["sub", "dir", 0],
        ["sub/b.txt", "file", 0],
        ["sub/deep", "dir", 0],
        ["sub/deep/c.txt", "file", 1],
      ],
    );
    assertFailure(await ferry(b, ["list", "nowhere"]), /No such folder: "nowhere"/, {
      what: "list of a missing folder",
    });
    assertFailure(await ferry(b, ["list", "a.txt"]), /Not a folder: "a\.txt"/, {
      what: "list of a file",
    });
    assertFailure(await ferry(b, ["mkdir", "empty"]), /Folder exists: "empty"/, {
      what: "mkdir of a folder",
    });
    assertFailure(await ferry(b, ["mkdir", "a.txt"]), /File exists: "a\.txt"/, {
      what: "mkdir over a file",
    });
    assertFailure(await ferry(b, ["mkdir", "x/y"]), /No such folder for "x\/y"/, {
      what: "mkdir without its parent",
    });
    assertFailure(await ferry(b, ["mkdir", "-p", "a.txt/y"]), /a\.txt is not a folder/, {
      what: "mkdir under a file",
    });
    await okText(b, ["mkdir", "-p", "empty"]);
    assert.equal(await headers(bucket, "files/x/"), null, "nothing made by a refused mkdir");
  },
});

Deno.test({
  name: "s3: rm removes a file (its folder stays), a folder only with -r, over several pages",
  ignore,
  async fn() {
    using _store = await holdStore();
    const bucket = await newBucket();
    await using a = await startS3Server(bucket);
    await using b = await startS3Server(bucket);
    assertSuccess(await ferry(a, ["put", "-", "keep/only.txt"], { stdin: "1" }), "put");
    await okText(b, ["rm", "keep/only.txt"]);
    assert.equal(await okText(a, ["list", "-r"]), "keep/\n", "the folder outlives its file");
    // More keys than one listing page (1,000) and one DeleteObjects request hold.
    await putMany(bucket, "files/big/f/", 1100);
    assertSuccess(await ferry(a, ["put", "-", "big/top.txt"], { stdin: "t" }), "put top");
    assertFailure(await ferry(b, ["rm", "big"]), /"big" is a folder/, { what: "rm without -r" });
    assert.equal(await countKeys(bucket, "files/big/"), 1101);
    assertFailure(await ferry(b, ["rm", "nothing"]), /No such file or folder: "nothing"/, {
      what: "rm of a missing name",
    });
    await okText(b, ["rm", "-r", "big"]);
    assert.equal(await countKeys(bucket, "files/big/"), 0, "every key under the folder removed");
    assert.equal(await okText(a, ["list", "-r"]), "keep/\n");
    await okText(a, ["rm", "-r", "keep"]);
    assert.equal(await okText(b, ["list", "-r"]), "");
  },
});

Deno.test({
  name: "s3: mv renames files and folders, refusing taken names unless --overwrite",
  ignore,
  async fn() {
    using _store = await holdStore();
    const bucket = await newBucket();
    await using a = await startS3Server(bucket);
    await using b = await startS3Server(bucket);
    const data = randomBytes(PART + 777);
    assertSuccess(await ferry(a, ["put", "-", "big.bin"], { stdin: data }), "put big");
    assertSuccess(await ferry(a, ["put", "-", "other.txt"], { stdin: "other" }), "put other");
    await okText(a, ["mkdir", "dir"]);
    const sum = (await headers(bucket, "files/big.bin"))?.get("x-amz-meta-ferry-checksum");
    assert.ok(sum);

    await okText(b, ["mv", "big.bin", "dir/moved.bin"]);
    assert.equal(await headers(bucket, "files/big.bin"), null, "the old name is gone");
    const moved = await headers(bucket, "files/dir/moved.bin");
    assert.equal(moved?.get("x-amz-meta-ferry-checksum"), sum, "the checksum moves with it");
    const got = await ferry(a, ["get", "dir/moved.bin", "-"]);
    assertSuccess(got, "get the moved file");
    assert.ok(Buffer.from(got.stdout).equals(Buffer.from(data)));

    assertFailure(await ferry(b, ["mv", "other.txt", "dir/moved.bin"]), /File exists/, {
      what: "mv over a file",
    });
    assert.equal((await ferry(a, ["get", "dir/moved.bin", "-"])).stdout.length, data.length);
    await okText(b, ["mv", "other.txt", "dir/moved.bin", "--overwrite"]);
    assert.equal(
      new TextDecoder().decode((await ferry(a, ["get", "dir/moved.bin", "-"])).stdout),
      "other",
    );
    assertFailure(await ferry(b, ["mv", "dir/moved.bin", "dir"]), /"dir" is a folder/, {
      what: "mv over a folder",
    });
    assertFailure(await ferry(b, ["mv", "dir", "dir/in"]), /into itself/, {
      what: "mv into itself",
    });
    assertFailure(await ferry(b, ["mv", "dir/moved.bin", "no/where"]), /No such folder/, {
      what: "mv into a missing folder",
    });
    assertFailure(await ferry(b, ["mv", "ghost", "x"]), /No such file or folder: "ghost"/, {
      what: "mv of a missing name",
    });

    // A folder moves with all it holds, empty folders included; the folder it left stays.
    await okText(a, ["mkdir", "-p", "tree/empty"]);
    assertSuccess(await ferry(a, ["put", "-", "tree/sub/c.txt"], { stdin: "c" }), "put c");
    await okText(a, ["mkdir", "parent"]);
    await okText(b, ["mv", "tree", "parent/renamed"]);
    assert.equal(
      await okText(a, ["list", "-r"]),
      "dir/\ndir/moved.bin\nparent/\nparent/renamed/\nparent/renamed/empty/\n" +
        "parent/renamed/sub/\nparent/renamed/sub/c.txt\n",
    );
    await okText(b, ["mv", "parent/renamed", "back"]);
    assert.equal(await okText(a, ["list", "parent"]), "", "the folder it left stays, empty");
    assertFailure(await ferry(b, ["mv", "back", "dir/moved.bin"]), /Cannot replace file/, {
      what: "a folder over a file",
    });
    assert.deepEqual(
      await stagingKeys(bucket),
      [],
      "no claim left",
    );
  },
});

Deno.test({
  name: "s3: two servers moving two files to one new name: exactly one wins, the other is refused",
  ignore,
  async fn() {
    using _store = await holdStore();
    const bucket = await newBucket();
    await using a = await startS3Server(bucket);
    await using b = await startS3Server(bucket);
    for (let round = 0; round < 3; round++) {
      const target = `won-${round}.txt`;
      assertSuccess(await ferry(a, ["put", "-", `x-${round}.txt`], { stdin: "from a" }), "put x");
      assertSuccess(await ferry(b, ["put", "-", `y-${round}.txt`], { stdin: "from b" }), "put y");
      const [ra, rb] = await Promise.all([
        ferry(a, ["mv", `x-${round}.txt`, target]),
        ferry(b, ["mv", `y-${round}.txt`, target]),
      ]);
      const wins = [ra, rb].filter((r) => r.code === 0);
      assert.equal(wins.length, 1, `exactly one wins:\n${ra.stderr}\n${rb.stderr}`);
      const loser = ra.code === 0 ? rb : ra;
      assertFailure(loser, /File exists/, { what: "the loser" });
      const got = new TextDecoder().decode((await ferry(a, ["get", target, "-"])).stdout);
      assert.equal(got, ra.code === 0 ? "from a" : "from b", "the winner's bytes");
      // The loser's file is still under its old name.
      const kept = ra.code === 0 ? `y-${round}.txt` : `x-${round}.txt`;
      assert.ok(await headers(bucket, `files/${kept}`), "the refused move left its source");
    }
  },
});

Deno.test({
  name: "s3: put -r through one server, get -r through the other; read-only refuses changes",
  ignore,
  async fn() {
    using _store = await holdStore();
    const bucket = await newBucket();
    await using a = await startS3Server(bucket);
    await using b = await startS3Server(bucket);
    const dir = await Deno.makeTempDir();
    try {
      const src = `${dir}/src`;
      await Deno.mkdir(`${src}/sub/deep`, { recursive: true });
      await Deno.mkdir(`${src}/empty`);
      await Deno.writeTextFile(`${src}/a.txt`, "alpha\n");
      await Deno.writeTextFile(`${src}/sub/b.txt`, "beta\n");
      const big = randomBytes(PART + 4321);
      await Deno.writeFile(`${src}/sub/deep/big.bin`, big);
      await okText(a, ["put", "-r", src, "mirror"]);
      assert.equal(
        await okText(b, ["list", "-r", "mirror"]),
        "mirror/a.txt\nmirror/empty/\nmirror/sub/\nmirror/sub/b.txt\nmirror/sub/deep/\n" +
          "mirror/sub/deep/big.bin\n",
      );
      const sum = (await headers(bucket, "files/mirror/sub/deep/big.bin"))
        ?.get("x-amz-meta-ferry-checksum");
      assert.match(sum ?? "", /^xxh128:/, "each file stored with its checksum");
      // By content, nothing differs: nothing is sent again.
      const again = await ferry(a, ["put", "-r", src, "mirror", "--checksum", "--json"]);
      assertSuccess(again, "put -r --checksum");
      const summary = summaryOf(again);
      assert.deepEqual([summary.files, summary.skipped, summary.failed], [0, 3, 0]);

      await okText(b, ["get", "-r", "mirror", "back"], dir);
      assert.equal(await Deno.readTextFile(`${dir}/back/a.txt`), "alpha\n");
      assert.equal(await Deno.readTextFile(`${dir}/back/sub/b.txt`), "beta\n");
      assert.ok(
        Buffer.from(await Deno.readFile(`${dir}/back/sub/deep/big.bin`)).equals(
          Buffer.from(big),
        ),
      );
      assert.ok((await Deno.stat(`${dir}/back/empty`)).isDirectory);
      // A second get finds the local copy up to date (size and mtime).
      const second = await ferry(b, ["get", "-r", "mirror", "back", "--json"], { cwd: dir });
      assertSuccess(second, "second get -r");
      const got = summaryOf(second);
      assert.deepEqual([got.files, got.skipped], [0, 3]);

      // --delete removes on the store what the sender lacks.
      await Deno.remove(`${src}/sub`, { recursive: true });
      await okText(a, ["put", "-r", src, "mirror", "--delete"]);
      assert.equal(await okText(b, ["list", "-r", "mirror"]), "mirror/a.txt\nmirror/empty/\n");

      await using reader = await startS3Server(bucket, ["--read-only"]);
      for (
        const args of [
          ["rm", "mirror/a.txt"],
          ["mv", "mirror/a.txt", "x.txt"],
          ["mkdir", "new"],
          ["put", "-r", src, "other"],
        ]
      ) {
        assertFailure(await ferry(reader, args), /read-only/, { what: args.join(" ") });
      }
      assert.equal(await okText(reader, ["list", "-r"]), "mirror/\nmirror/a.txt\nmirror/empty/\n");
      await okText(reader, ["get", "-r", "mirror", "ro"], dir);
      assert.equal(await Deno.readTextFile(`${dir}/ro/a.txt`), "alpha\n");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "s3: mput through one server, mget through the other; a taken name is refused on its own",
  ignore,
  async fn() {
    using _store = await holdStore();
    const bucket = await newBucket();
    await using a = await startS3Server(bucket);
    await using b = await startS3Server(bucket);
    await using work = await makeTempDir();
    const big = randomBytes(PART + 999);
    await Deno.writeFile(`${work.path}/big.bin`, big);
    await Deno.writeTextFile(`${work.path}/small.txt`, "small\n");
    await okText(a, ["mput", "big.bin", "small.txt"], work.path);
    assert.match(
      (await headers(bucket, "files/big.bin"))?.get("x-amz-meta-ferry-checksum") ?? "",
      /^xxh128:/,
    );
    const again = await ferry(b, ["mput", "small.txt"], { cwd: work.path });
    assert.equal(again.code, 1, again.stderr);
    assert.match(again.stderr, /File exists: "small\.txt"/);
    await Deno.mkdir(`${work.path}/back`);
    await okText(b, ["mget", "big.bin", "small.txt"], `${work.path}/back`);
    assert.ok(
      Buffer.from(await Deno.readFile(`${work.path}/back/big.bin`)).equals(
        Buffer.from(big),
      ),
    );
    assert.equal(await Deno.readTextFile(`${work.path}/back/small.txt`), "small\n");
  },
});
