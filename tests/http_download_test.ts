/**
 * The HTTP side's reads over real HTTP against the real server: listings (HTML escaped, JSON as
 * `ferry list --json`), downloads with ranges, validators and If-Range, names resolved by the
 * store (no traversal, no private folders), the idle rule for a slow and a stopped reader, and
 * folders streamed as tar with `--http-archives`.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  ferry,
  makeTempDir,
  randomBytes,
  RESUME_DIR,
  runCommand,
  STAGING_DIR,
  startHttp,
} from "./harness.ts";
import { curl, HAS_CURL } from "./http_harness.ts";

const decoder = new TextDecoder();

Deno.test("http: listings show names escaped, and ?json is ferry list --json's", async () => {
  const { server, base } = await startHttp();
  await using _ = server;
  const hostile = `<img src=x onerror=alert(1)>&"'.txt`;
  await Deno.mkdir(`${server.root}/sub`);
  await Deno.writeTextFile(`${server.root}/sub/${hostile}`, "boo");
  await Deno.writeTextFile(`${server.root}/a b#c%.txt`, "hello");

  const page = await (await fetch(base, { headers: { accept: "text/html" } })).text();
  assert.match(page, /href="\/sub\/"/);
  assert.match(page, /href="\/a%20b%23c%25\.txt"/);
  const sub = await fetch(`${base}sub/`);
  assert.equal(sub.status, 200);
  const html = await sub.text();
  assert.ok(!html.includes("<img src=x"), "hostile name shown as markup");
  assert.ok(html.includes("&#60;img src=x onerror=alert(1)&#62;&#38;&#34;&#39;.txt"));
  assert.match(sub.headers.get("content-security-policy") ?? "", /default-src 'none'/);

  // A folder without its slash is sent to it.
  const bare = await fetch(`${base}sub`, { redirect: "manual" });
  assert.equal(bare.status, 301);
  assert.equal(bare.headers.get("location"), "/sub/");
  await bare.body?.cancel();

  // ?json is `ferry list --json` of the folder; with &recursive, `ferry list -r --json`; an
  // empty folder is listed in its parent.
  await Deno.mkdir(`${server.root}/sub/empty`);
  const listed = async (args: string[]) =>
    JSON.parse(decoder.decode((await ferry(server, ["list", "--json", ...args])).stdout));
  const json = await (await fetch(`${base}?json`)).json();
  assert.deepEqual(json, await listed([]));
  assert.deepEqual(json.map((e: { type: string }) => e.type), ["file", "dir"]);
  assert.deepEqual(await (await fetch(`${base}?json&recursive`)).json(), await listed(["-r"]));
  const accept = await fetch(`${base}sub/`, { headers: { accept: "application/json" } });
  const subJson = await accept.json();
  assert.deepEqual(subJson, await listed(["sub"]));
  assert.deepEqual(subJson.map((e: { name: string }) => e.name), [`sub/${hostile}`, "sub/empty"]);
  const subPage = await (await fetch(`${base}sub/`, { headers: { accept: "text/html" } })).text();
  assert.match(subPage, /href="\/sub\/empty\/"/);
  const missing = await fetch(`${base}nope/`);
  assert.equal(missing.status, 404);
  await missing.body?.cancel();
  await server.waitForLog(/http GET "sub\/" 200 \d+ bytes ok/);
  await server.waitForLog(/http GET "nope" 404 0 bytes refused/);
});

Deno.test("http: downloads with ranges, validators, If-Range and HEAD", async (t) => {
  const { server, base } = await startHttp();
  await using _ = server;
  const bytes = randomBytes(300_000);
  await Deno.writeFile(`${server.root}/f.bin`, bytes);
  const url = `${base}f.bin`;

  await t.step("GET and HEAD", async () => {
    const got = await fetch(url);
    assert.equal(got.status, 200);
    assert.deepEqual(new Uint8Array(await got.arrayBuffer()), bytes);
    const head = await fetch(url, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("content-length"), "300000");
    assert.equal(head.headers.get("accept-ranges"), "bytes");
    assert.match(head.headers.get("etag") ?? "", /^"[0-9a-f]+-[0-9a-f]+"$/);
    assert.ok(head.headers.get("last-modified"));
  });

  const etag = (await fetch(url, { method: "HEAD" })).headers.get("etag")!;

  await t.step("ranges", async () => {
    const part = await fetch(url, { headers: { range: "bytes=100-199" } });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get("content-range"), "bytes 100-199/300000");
    assert.deepEqual(new Uint8Array(await part.arrayBuffer()), bytes.subarray(100, 200));
    const suffix = await fetch(url, { headers: { range: "bytes=-10" } });
    assert.deepEqual(new Uint8Array(await suffix.arrayBuffer()), bytes.subarray(-10));
    const beyond = await fetch(url, { headers: { range: "bytes=300000-" } });
    assert.equal(beyond.status, 416);
    assert.equal(beyond.headers.get("content-range"), "bytes */300000");
    await beyond.body?.cancel();
    const same = await fetch(url, { headers: { "if-none-match": etag } });
    assert.equal(same.status, 304);
    await same.body?.cancel();
  });

  await t.step(
    "If-Range with the current ETag resumes; with an old one, sends it all",
    async () => {
      const resumed = await fetch(url, { headers: { range: "bytes=1000-", "if-range": etag } });
      assert.equal(resumed.status, 206);
      assert.deepEqual(new Uint8Array(await resumed.arrayBuffer()), bytes.subarray(1000));
      const stale = await fetch(url, { headers: { range: "bytes=1000-", "if-range": '"1-1"' } });
      assert.equal(stale.status, 200);
      assert.deepEqual(new Uint8Array(await stale.arrayBuffer()), bytes);
    },
  );

  await t.step("curl -C - resumes; with If-Range it never stitches a changed file", async () => {
    if (!HAS_CURL) return console.log("  skipped: curl is missing");
    await using dir = await makeTempDir();
    const out = `${dir.path}/f.bin`;
    await Deno.writeFile(out, bytes.subarray(0, 123_456));
    const resumed = await curl(["-C", "-", "-o", out, url]);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.deepEqual(await Deno.readFile(out), bytes);

    // The file changes on the server while the client holds an old prefix.
    await Deno.writeFile(out, bytes.subarray(0, 1000));
    await Deno.writeFile(`${server.root}/f.bin`, randomBytes(300_001));
    const stitched = await curl(["-C", "-", "-H", `If-Range: ${etag}`, "-o", out, url]);
    // curl refuses to resume when the server sends the whole (new) file: nothing is stitched.
    assert.notEqual(stitched.code, 0);
    assert.deepEqual(await Deno.readFile(out), bytes.subarray(0, 1000));
  });
});

Deno.test("http: a download read slowly is served whole; one the client stops reading is cut", async (t) => {
  const { server, base } = await startHttp(["--idle-timeout", "1"]);
  await using _ = server;
  // Far more than the socket buffers and Deno's queue hold, so the server has to wait.
  const size = 32 << 20;
  await Deno.writeFile(`${server.root}/big.bin`, randomBytes(size));

  await t.step(
    "read steadily at about 8 MiB/s, 4 s in all, longer than the timeout: whole",
    async () => {
      const response = await fetch(`${base}big.bin`);
      const reader = response.body!.getReader();
      let got = 0;
      const started = Date.now();
      while (true) {
        const { done, value } = await reader.read();
        if (done) break;
        got += value.length;
        // Paced, not bursty: the server sees the client take bytes all along.
        const due = started + got / (8 << 20) * 1000;
        if (due > Date.now()) await new Promise((resolve) => setTimeout(resolve, due - Date.now()));
      }
      assert.equal(got, size);
      assert.ok(Date.now() - started > 2000, "read too fast to test the idle rule");
      await server.waitForLog(new RegExp(`http GET "big.bin" 200 ${size} bytes ok `));
    },
  );

  await t.step("reading nothing for the idle timeout is cut", async () => {
    const url = new URL(base);
    using conn = await Deno.connect({ hostname: url.hostname, port: Number(url.port) });
    const head = `GET /big.bin HTTP/1.1\r\nHost: ${url.host}\r\n\r\n`;
    await conn.write(new TextEncoder().encode(head));
    const line = await server.waitForLog(/http GET "big.bin" 200 \d+ bytes cut \(idle for 1 s\)/);
    const sent = Number(/ 200 (\d+) bytes/.exec(line)![1]);
    assert.ok(sent > 0 && sent < size, `bytes sent before the cut: ${sent}`);
  });
});

Deno.test("http: names are resolved by the store: no traversal, no private folders", async (t) => {
  await using outside = await makeTempDir();
  await Deno.writeTextFile(`${outside.path}/secret.txt`, "secret");
  const { server, base } = await startHttp();
  await using _ = server;
  await Deno.symlink(outside.path, `${server.root}/out`);
  await Deno.symlink(`${outside.path}/secret.txt`, `${server.root}/secret-link`);
  await Deno.writeTextFile(`${server.root}/ok.txt`, "ok");

  const status = async (path: string, init: RequestInit = {}) => {
    const response = await fetch(base + path, init);
    await response.body?.cancel();
    return response.status;
  };
  await t.step("reads", async () => {
    for (
      const path of ["out/secret.txt", "secret-link", "out/", `${STAGING_DIR}/`, `${RESUME_DIR}/`]
    ) {
      const code = await status(path);
      assert.ok(code === 400 || code === 404, `${path}: ${code}`);
    }
    assert.equal(await status("a%2fb"), 400);
    assert.equal(await status("a%2Fb"), 400);
    assert.equal(await status("..%2fok.txt"), 400);
    assert.equal(await status("%00"), 400);
  });
  await t.step("curl --path-as-is cannot climb out either", async () => {
    if (!HAS_CURL) return console.log("  skipped: curl is missing");
    for (const path of ["../secret.txt", "%2e%2e/secret.txt", "sub/%2e%2e/%2e%2e/secret.txt"]) {
      const got = await curl([
        "--path-as-is",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        base + path,
      ]);
      assert.ok(["400", "404"].includes(got.stdout), `${path}: ${got.stdout}`);
    }
  });
  await t.step("writes", async () => {
    const put = (path: string) => status(path, { method: "PUT", body: "x" });
    assert.equal(await put("out/x.txt"), 400);
    assert.equal(await put(`${STAGING_DIR}/x`), 400);
    assert.equal(await put("a%2fb"), 400);
    assert.equal(await put("dir/"), 400);
    assert.deepEqual([...Deno.readDirSync(outside.path)].map((e) => e.name), ["secret.txt"]);
  });
});

Deno.test("http: --http-archives streams a folder as tar, long and non-ASCII names intact", async () => {
  const { server, base } = await startHttp(["--http-archives"]);
  await using _ = server;
  const long = "d".repeat(60) + "/" + "n".repeat(120) + ".bin";
  const files: Record<string, Uint8Array<ArrayBuffer>> = {
    "a.txt": randomBytes(0),
    "sub/b.bin": randomBytes(513),
    "sub/Grüße ✓.txt": randomBytes(1000),
    [long]: randomBytes(70_000),
  };
  for (const [name, bytes] of Object.entries(files)) {
    await Deno.mkdir(`${server.root}/share/${name}`.replace(/\/[^/]+$/, ""), { recursive: true });
    await Deno.writeFile(`${server.root}/share/${name}`, bytes);
  }
  await Deno.writeTextFile(`${server.root}/outside-share.txt`, "not in the archive");
  const response = await fetch(`${base}share/?tar`);
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "application/x-tar");
  assert.match(response.headers.get("content-disposition") ?? "", /share\.tar/);
  await using dir = await makeTempDir();
  await Deno.writeFile(`${dir.path}/share.tar`, new Uint8Array(await response.arrayBuffer()));
  const extracted = await runCommand("tar", ["-xf", "share.tar"], { cwd: dir.path });
  assert.equal(extracted.code, 0, extracted.stderr);
  for (const [name, bytes] of Object.entries(files)) {
    assert.deepEqual(await Deno.readFile(`${dir.path}/share/${name}`), bytes, name);
  }
  assert.ok(!(await Deno.stat(`${dir.path}/share/outside-share.txt`).catch(() => null)));
  await server.waitForLog(/http GET "share\/" 200 \d+ bytes tar of 4 files, 3 folders: ok/);

  // Empty folders arrive too, nested or not, and the archive of the whole share is the tree as
  // it is on the server, private folders left out: `diff -r` finds no difference.
  await Deno.mkdir(`${server.root}/share/empty`);
  await Deno.mkdir(`${server.root}/share/sub/deeper/empty too`, { recursive: true });
  await Deno.mkdir(`${server.root}/alone`);
  const whole = await fetch(`${base}?tar`);
  assert.equal(whole.status, 200);
  await Deno.writeFile(`${dir.path}/ferry.tar`, new Uint8Array(await whole.arrayBuffer()));
  const listed = await runCommand("tar", ["-tf", "ferry.tar"], { cwd: dir.path });
  assert.equal(listed.code, 0, listed.stderr);
  const names = new TextDecoder().decode(listed.stdout).split("\n").filter((n) => n !== "");
  for (const folder of ["ferry/", "ferry/alone/", "ferry/share/empty/", "ferry/share/sub/"]) {
    assert.ok(names.includes(folder), `${folder} in:\n${names.join("\n")}`);
  }
  const unpacked = await runCommand("tar", ["-xf", "ferry.tar"], { cwd: dir.path });
  assert.equal(unpacked.code, 0, unpacked.stderr);
  const diff = await runCommand("diff", [
    "-r",
    ...["-x", STAGING_DIR, "-x", RESUME_DIR],
    server.root,
    `${dir.path}/ferry`,
  ]);
  assert.equal(
    diff.code,
    0,
    `diff -r: ${diff.stdout.length} bytes\n${new TextDecoder().decode(diff.stdout)}`,
  );
  await server.waitForLog(/http GET "\/" 200 \d+ bytes tar of 5 files, 8 folders: ok/);

  // Off by default.
  const { server: plain, base: plainBase } = await startHttp();
  await using _plain = plain;
  const refused = await fetch(`${plainBase}?tar`);
  assert.equal(refused.status, 403);
  await refused.body?.cancel();
});
