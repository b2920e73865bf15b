/**
 * Changes to the tree over real HTTP against the real server (lib/http/tree_change.ts): DELETE
 * (folders only with ?recursive), MOVE with a Destination header (no overwrite unless asked),
 * MKCOL (?parents), each refused outside the root and in the private folders, on --read-only,
 * without the token when one is set and from another site; one log line each; and curl.
 */

import assert from "node:assert/strict";
import { dirname } from "node:path";
import {
  assertRootHolds,
  assertSuccess,
  commandWorks,
  ferry,
  makeTempDir,
  makeTempFile,
  runCommand,
  STAGING_DIR,
  startHttp,
} from "./harness.ts";
import { rawStatus } from "./http_harness.ts";

/** Sends one request and returns its status and body text. */
async function send(
  base: string,
  method: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; text: string; headers: Headers }> {
  const response = await fetch(base + path.replace(/^\//, ""), { method, headers });
  return { status: response.status, text: await response.text(), headers: response.headers };
}

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

Deno.test("http tree: DELETE removes files, folders only with ?recursive, nothing outside", async () => {
  const { server, base } = await startHttp();
  await using _ = server;
  const root = server.root;
  await Deno.mkdir(`${root}/dir/inner`, { recursive: true });
  await Deno.writeTextFile(`${root}/dir/inner/deep.txt`, "deep");
  await Deno.writeTextFile(`${root}/a b#.txt`, "a");
  await Deno.mkdir(`${root}/empty`);

  const file = await send(base, "DELETE", "a%20b%23.txt");
  assert.equal(file.status, 200, file.text);
  assert.match(file.text, /^Removed "a b#.txt"\n$/);
  assert.ok(!await exists(`${root}/a b#.txt`));

  const folder = await send(base, "DELETE", "dir/");
  assert.equal(folder.status, 409);
  assert.match(folder.text, /is a folder: add \?recursive/);
  assert.ok(await exists(`${root}/dir/inner/deep.txt`));
  const emptyFolder = await send(base, "DELETE", "empty");
  assert.equal(emptyFolder.status, 409, "an empty folder also needs ?recursive, as ferry rm");
  const recursive = await send(base, "DELETE", "dir/?recursive");
  assert.equal(recursive.status, 200, recursive.text);
  assert.ok(!await exists(`${root}/dir`));

  assert.equal((await send(base, "DELETE", "dir/")).status, 404);
  assert.equal((await send(base, "DELETE", "?recursive")).status, 403, "the top folder");
  for (const path of ["/../x", "/%2e%2e/x", "/sub/%2e%2e/%2e%2e/x", "/..%2fx"]) {
    const code = await rawStatus(base, "DELETE", path);
    assert.ok(code === 400 || code === 404, `${path}: ${code}`);
  }
  // A symlink that leads out: nothing behind it can be removed.
  await using outside = await makeTempDir();
  await Deno.writeTextFile(`${outside.path}/secret.txt`, "secret");
  await Deno.symlink(outside.path, `${root}/out`);
  const behind = await send(base, "DELETE", "out/secret.txt");
  assert.ok(behind.status === 400 || behind.status === 404, behind.text);
  assert.equal((await send(base, "DELETE", "out/?recursive")).status, 200, "the link itself");
  assert.equal(await Deno.readTextFile(`${outside.path}/secret.txt`), "secret");
  assert.equal((await send(base, "DELETE", `${STAGING_DIR}/?recursive`)).status, 400);
  assert.equal((await send(base, "DELETE", "a%2Fb")).status, 400);
  const json = await send(base, "DELETE", "missing.txt", { accept: "application/json" });
  assert.equal(json.status, 404);
  assert.match(JSON.parse(json.text).error, /No such file or folder/);
  await assertRootHolds(root, ["empty"]);
  await server.waitForLog(/http DELETE "a b#.txt" 200 0 bytes ok /);
  await server.waitForLog(/http DELETE "dir" 409 0 bytes refused \(.*is a folder/);
});

Deno.test("http tree: MOVE renames and moves, never over a file unless asked", async () => {
  const { server, base } = await startHttp();
  await using _ = server;
  const root = server.root;
  await Deno.mkdir(`${root}/to`);
  await Deno.mkdir(`${root}/folder/sub`, { recursive: true });
  await Deno.writeTextFile(`${root}/one.txt`, "one");
  await Deno.writeTextFile(`${root}/two.txt`, "two");

  const renamed = await send(base, "MOVE", "one.txt", { destination: "/%C3%A9t%C3%A9.txt" });
  assert.equal(renamed.status, 201, renamed.text);
  assert.equal(renamed.headers.get("location"), "/%C3%A9t%C3%A9.txt");
  assert.equal(await Deno.readTextFile(`${root}/été.txt`), "one");
  // A whole URL on this server names the same path.
  const moved = await send(base, "MOVE", "%C3%A9t%C3%A9.txt", { destination: `${base}to/x.txt` });
  assert.equal(moved.status, 201, moved.text);
  assert.equal(await Deno.readTextFile(`${root}/to/x.txt`), "one");

  const taken = await send(base, "MOVE", "two.txt", { destination: "/to/x.txt" });
  assert.equal(taken.status, 409);
  assert.match(taken.text, /File exists: "to\/x.txt" \(send Overwrite: T/);
  const no = await send(base, "MOVE", "two.txt", { destination: "/to/x.txt", overwrite: "F" });
  assert.equal(no.status, 412);
  assert.equal(await Deno.readTextFile(`${root}/to/x.txt`), "one");
  const yes = await send(base, "MOVE", "two.txt", { destination: "/to/x.txt", overwrite: "T" });
  assert.equal(yes.status, 201, yes.text);
  assert.equal(await Deno.readTextFile(`${root}/to/x.txt`), "two");

  // Folders move with everything in them; never into themselves or over a file.
  assert.equal((await send(base, "MOVE", "folder/", { destination: "/to/folder" })).status, 201);
  assert.ok(await exists(`${root}/to/folder/sub`));
  const into = await send(base, "MOVE", "to/", { destination: "/to/folder/sub/to" });
  assert.equal(into.status, 400);
  assert.match(into.text, /into itself/);
  const overFile = await send(base, "MOVE", "to/folder", {
    destination: "/to/x.txt",
    overwrite: "T",
  });
  assert.equal(overFile.status, 409);

  // Bad destinations: none, elsewhere, outside the root, the private folders, missing folder.
  assert.equal((await send(base, "MOVE", "to/x.txt")).status, 400);
  const elsewhere = await send(base, "MOVE", "to/x.txt", { destination: "http://evil.example/x" });
  assert.equal(elsewhere.status, 400);
  assert.match(elsewhere.text, /must be on this server/);
  assert.equal((await send(base, "MOVE", "to/x.txt", { destination: "/..%2fx" })).status, 400);
  await using outside = await makeTempDir();
  await Deno.symlink(outside.path, `${root}/out`);
  const out = await send(base, "MOVE", "to/x.txt", { destination: "/out/x.txt" });
  assert.ok(out.status === 400 || out.status === 404, out.text);
  assert.equal(await rawStatus(base, "MOVE", "/../etc/passwd"), 400);
  await Deno.remove(`${root}/out`);
  assert.deepEqual([...Deno.readDirSync(outside.path)], []);
  const priv = await send(base, "MOVE", "to/x.txt", { destination: `/${STAGING_DIR}/x` });
  assert.equal(priv.status, 400);
  assert.equal((await send(base, "MOVE", "to/x.txt", { destination: "/no/x" })).status, 404);
  assert.equal((await send(base, "MOVE", "gone", { destination: "/x" })).status, 404);
  assert.equal((await send(base, "MOVE", "", { destination: "/x" })).status, 403);
  assert.equal((await send(base, "MOVE", "to/x.txt", { destination: "/" })).status, 400);
  assert.equal(
    (await send(base, "MOVE", "to/x.txt", { destination: "/y", overwrite: "maybe" })).status,
    400,
  );
  await assertRootHolds(root, ["to"]);
  assert.ok(await exists(`${root}/to/folder/sub`));
  assert.equal(await Deno.readTextFile(`${root}/to/x.txt`), "two");
  await server.waitForLog(/http MOVE "one.txt" 201 0 bytes ok \(to "été.txt"\) /);
  await server.waitForLog(/http MOVE "two.txt" 409 0 bytes refused \(File exists/);

  // A symlink moves as a link, unless its relative target would point elsewhere from there
  // (the same rule as `ferry mv`: tests/tree_ops_test.ts).
  await Deno.symlink("x.txt", `${root}/to/link`);
  const away = await send(base, "MOVE", "to/link", { destination: "/link" });
  assert.equal(away.status, 403, away.text);
  assert.match(away.text, /its relative target "x\.txt" would point elsewhere from there/);
  assert.equal(await Deno.readLink(`${root}/to/link`), "x.txt", "left where it was");
  const renamedLink = await send(base, "MOVE", "to/link", { destination: "/to/same" });
  assert.equal(renamedLink.status, 201, renamedLink.text);
  assert.equal(await Deno.readTextFile(`${root}/to/same`), "two");
});

Deno.test("http tree: MKCOL creates a folder, ?parents its parents, shown in listings", async () => {
  const { server, base } = await startHttp();
  await using _ = server;
  const root = server.root;
  const made = await send(base, "MKCOL", "new%20folder/");
  assert.equal(made.status, 201, made.text);
  assert.equal(made.headers.get("location"), "/new%20folder/");
  assert.ok((await Deno.stat(`${root}/new folder`)).isDirectory);
  const again = await send(base, "MKCOL", "new%20folder");
  assert.equal(again.status, 409);
  assert.match(again.text, /Folder exists/);
  const orphan = await send(base, "MKCOL", "a/b/c/");
  assert.equal(orphan.status, 404);
  assert.match(orphan.text, /add \?parents/);
  assert.equal((await send(base, "MKCOL", "a/b/c/?parents")).status, 201);
  assert.ok((await Deno.stat(`${root}/a/b/c`)).isDirectory);
  // A path that climbs is refused or, normalized as URLs are, stays inside the root.
  for (const path of ["/../out/", "/%2e%2e/out2/", "/..%2fout3/"]) {
    await rawStatus(base, "MKCOL", path);
  }
  for (const name of ["out", "out2", "out3"]) assert.ok(!await exists(`${root}/../${name}`), name);
  await Deno.remove(`${root}/out`).catch(() => {});
  await Deno.remove(`${root}/out2`).catch(() => {});
  assert.equal((await send(base, "MKCOL", `${STAGING_DIR}/x/`)).status, 400);
  assert.equal((await send(base, "MKCOL", "/")).status, 403);
  await Deno.writeTextFile(`${root}/file`, "f");
  assert.equal((await send(base, "MKCOL", "file/")).status, 409);

  const listing = await (await fetch(`${base}?json`)).json();
  assert.deepEqual(
    listing.map((e: { name: string; type: string }) => `${e.name}:${e.type}`),
    ["a:dir", "file:file", "new folder:dir"],
  );
  const page = await (await fetch(`${base}a/b/`, { headers: { accept: "text/html" } })).text();
  assert.match(page, /href="\/a\/b\/c\/"/);
  await assertRootHolds(root, ["a", "file", "new folder"]);
  await server.waitForLog(/http MKCOL "new folder" 201 0 bytes ok /);
});

Deno.test("http tree: --read-only refuses every change, and the page offers none", async () => {
  const { server, base } = await startHttp(["--read-only"]);
  await using _ = server;
  await Deno.writeTextFile(`${server.root}/keep.txt`, "k");
  for (
    const [method, path, headers] of [
      ["DELETE", "keep.txt", {}],
      ["MOVE", "keep.txt", { destination: "/moved.txt" }],
      ["MKCOL", "new/", {}],
    ] as const
  ) {
    const result = await send(base, method, path, headers);
    assert.equal(result.status, 403, `${method}: ${result.text}`);
    assert.match(result.text, /read-only/);
  }
  const page = await (await fetch(base, { headers: { accept: "text/html" } })).text();
  assert.ok(!page.includes('data-change="1"') && !page.includes("newfolder"));
  await assertRootHolds(server.root, ["keep.txt"]);
});

Deno.test("http tree: changes need the token, and never come from another site", async (t) => {
  await t.step("with a token (and public reading)", async () => {
    const token = "tree-token-0123456789abcdef";
    await using tokenFile = await makeTempFile(token);
    const { server, base } = await startHttp([
      "--token-file",
      tokenFile.path,
      "--http-public-read",
    ]);
    await using _ = server;
    const origin = new URL(base).origin;
    await Deno.writeTextFile(`${server.root}/f.txt`, "f");
    const page = await (await fetch(base, { headers: { accept: "text/html" } })).text();
    assert.ok(!page.includes('data-change="1"'), "changes offered to a visitor without the token");

    assert.equal((await send(base, "DELETE", "f.txt")).status, 401);
    assert.equal((await send(base, "MKCOL", "d/")).status, 401);
    assert.equal((await send(base, "MOVE", "f.txt", { destination: "/g.txt" })).status, 401);
    const wrong = { authorization: "Bearer wrong-wrong-wrong" };
    assert.equal((await send(base, "MKCOL", "d/", wrong)).status, 401);
    await assertRootHolds(server.root, ["f.txt"]);

    const auth = { authorization: `Bearer ${token}` };
    assert.equal((await send(base, "MKCOL", "d/", auth)).status, 201);

    // A signed-in browser: changes from the page go through, from another site they do not.
    const login = await fetch(`${base}?login`, {
      method: "POST",
      body: new URLSearchParams({ token, next: "/" }),
      headers: { origin },
      redirect: "manual",
    });
    assert.equal(login.status, 303);
    await login.body?.cancel();
    const cookie = (login.headers.get("set-cookie") ?? "").split(";")[0];
    const signedPage = await (await fetch(base, { headers: { accept: "text/html", cookie } }))
      .text();
    assert.ok(signedPage.includes('data-change="1"'), "changes not offered when signed in");
    const cross = await send(base, "DELETE", "f.txt", { cookie, origin: "http://evil.example" });
    assert.equal(cross.status, 403);
    const fetchSite = await send(base, "DELETE", "f.txt", {
      cookie,
      "sec-fetch-site": "cross-site",
    });
    assert.equal(fetchSite.status, 403);
    assert.ok(await exists(`${server.root}/f.txt`));
    const same = await send(base, "MOVE", "f.txt", { cookie, origin, destination: "/d/f.txt" });
    assert.equal(same.status, 201, same.text);
    await assertRootHolds(server.root, ["d"]);
    assert.equal(await Deno.readTextFile(`${server.root}/d/f.txt`), "f");
  });

  await t.step("without a token: still not from another site", async () => {
    const { server, base } = await startHttp();
    await using _ = server;
    const origin = new URL(base).origin;
    await Deno.writeTextFile(`${server.root}/f.txt`, "f");
    const cross = await send(base, "DELETE", "f.txt", { origin: "http://evil.example" });
    assert.equal(cross.status, 403);
    assert.match(cross.text, /another site/);
    const put = await fetch(`${base}p.txt`, {
      method: "PUT",
      body: "p",
      headers: { "sec-fetch-site": "cross-site" },
    });
    assert.equal(put.status, 403);
    await put.body?.cancel();
    assert.equal((await send(base, "DELETE", "f.txt", { origin })).status, 200);
    await assertRootHolds(server.root, []);
  });
});

Deno.test({
  name: "http tree: curl -X MKCOL, MOVE and DELETE",
  ignore: !await commandWorks("curl", ["--version"]),
  async fn() {
    const { server, base } = await startHttp();
    await using _ = server;
    const curl = async (args: string[]) => {
      const result = await runCommand("curl", [
        "-sS",
        "--fail-with-body",
        "--max-time",
        "30",
        ...args,
      ]);
      return { code: result.code, out: new TextDecoder().decode(result.stdout) };
    };
    assert.equal((await curl(["-X", "MKCOL", `${base}docs/`])).out, 'Created folder "docs"\n');
    await Deno.writeTextFile(`${server.root}/docs/a.txt`, "a");
    const moved = await curl(["-X", "MOVE", "-H", "Destination: /b.txt", `${base}docs/a.txt`]);
    assert.equal(moved.out, 'Moved "docs/a.txt" to "b.txt"\n');
    const refused = await curl(["-X", "DELETE", `${base}docs/`]);
    assert.equal(refused.code, 22);
    assert.equal((await curl(["-X", "DELETE", `${base}docs/?recursive`])).code, 0);
    assert.equal((await curl(["-X", "DELETE", `${base}b.txt`])).code, 0);
    await assertRootHolds(server.root, []);
  },
});

Deno.test("http tree: a name that is not UTF-8 is listed marked, never linked or offered", async () => {
  const { server, base } = await startHttp();
  await using _ = server;
  await Deno.writeTextFile(`${server.root}/fine.txt`, "f");
  const made = await runCommand("sh", ["-c", 'printf x > "$(printf "bad\\377name")"'], {
    cwd: server.root,
  });
  assert.equal(made.code, 0, made.stderr);
  const json = await (await fetch(`${base}?json`)).json();
  const listed = await ferry(server, ["list", "--json"]);
  assert.deepEqual(json, JSON.parse(new TextDecoder().decode(listed.stdout)));
  assert.deepEqual(json[0], {
    name: "bad\ufffdname",
    type: "file",
    size: null,
    mtime: null,
    notUtf8: true,
  });
  const page = await (await fetch(base, { headers: { accept: "text/html" } })).text();
  const row = /<tr data-name="bad\ufffdname"[^]*?<\/tr>/.exec(page)?.[0] ?? "";
  assert.match(row, /data-fixed="1"/);
  assert.match(row, /name not UTF-8/);
  assert.doesNotMatch(row, /href=/);
});

Deno.test("http tree: ?json&recursive is the text of list -r --json, written as it is walked", async () => {
  const { server, base } = await startHttp();
  await using _ = server;
  for (const name of ["a/x.txt", "a/b/y.txt", "a-b", "a.txt", "z.txt"]) {
    await Deno.mkdir(dirname(`${server.root}/${name}`), { recursive: true });
    await Deno.writeTextFile(`${server.root}/${name}`, name);
  }
  const response = await fetch(`${base}?json&recursive`);
  assert.equal(response.headers.get("content-length"), null, "chunked: never counted first");
  const text = await response.text();
  const listed = await ferry(server, ["list", "-r", "--json"]);
  assertSuccess(listed, "list -r --json");
  assert.equal(text, new TextDecoder().decode(listed.stdout));
  assert.deepEqual(
    JSON.parse(text).map((e: { name: string }) => e.name),
    ["a", "a-b", "a.txt", "a/b", "a/b/y.txt", "a/x.txt", "z.txt"],
  );
  // HEAD walks nothing and sends nothing.
  const head = await fetch(`${base}?json&recursive`, { method: "HEAD" });
  assert.equal(head.status, 200);
  assert.equal(await head.text(), "");
});

Deno.test("http page: a folder of thousands of entries that fits one page is sent in pieces, folders first", async () => {
  // A page big enough for the whole folder: it is listed whole (tests/http_pages_test.ts pages).
  const { server, base } = await startHttp(["--http-page-size", "5000"]);
  await using _ = server;
  // More than one batch of the walk (1,024), with folders whose names sort among the files'.
  const files: string[] = [];
  const folders: string[] = [];
  await Deno.mkdir(`${server.root}/big`);
  for (let i = 0; i < 2500; i++) {
    const name = `f${String(i).padStart(4, "0")}.txt`;
    files.push(name);
    await Deno.writeFile(`${server.root}/big/${name}`, new Uint8Array(0));
    if (i % 500 === 250) {
      folders.push(`f${String(i).padStart(4, "0")}`);
      await Deno.mkdir(`${server.root}/big/${folders.at(-1)}`);
    }
  }
  const response = await fetch(`${base}big/`, { headers: { accept: "text/html" } });
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-length"), null, "chunked: never counted first");
  const page = await response.text();
  const names = [...page.matchAll(/<tr data-name="([^"]*)"/g)].map((m) => m[1]);
  assert.deepEqual(names, [...folders, ...files], "folders first, then files, each by name");
  assert.match(page, /<p class="mut" id="empty" hidden>/);
  assert.match(page, /<\/tbody><\/table>.*<\/html>\n$/s);
  await server.waitForLog(/http GET "big\/" 200 \d+ bytes ok/);
});
