/**
 * Access to the HTTP side: a token as bearer or sign-in cookie with cross-site requests refused,
 * `--http-public-read`, `--max-connections`, HTTPS with the server's certificate, the
 * command-line rules of `--http`, and `--http-qr`'s QR code of the page's address.
 *
 * @module
 */

import assert from "node:assert/strict";
import qrcode from "qrcode-generator";
import { serverAccessOf } from "../lib/server_access.ts";
import {
  assertRootHolds,
  assertUsageError,
  commandWorks,
  makeTempDir,
  makeTempFile,
  runCommand,
  runServer,
  startHttp,
  waitFor,
  writeRandomFile,
} from "./harness.ts";
import { curl, HAS_CURL, rawStatus } from "./http_harness.ts";

const decoder = new TextDecoder();

Deno.test("http: with --token-file, bearer and sign-in cookie; cross-site refused", async (t) => {
  const token = "s3cret-token-0123456789abcdef";
  await using tokenFile = await makeTempFile(token + "\n");
  const { server, base } = await startHttp(["--token-file", tokenFile.path]);
  await using _ = server;
  await Deno.writeTextFile(`${server.root}/f.txt`, "payload");
  const origin = new URL(base).origin;

  await t.step("no token: 401, a browser gets the form", async () => {
    const plain = await fetch(`${base}f.txt`);
    assert.equal(plain.status, 401);
    assert.match(plain.headers.get("www-authenticate") ?? "", /Bearer/);
    await plain.body?.cancel();
    const browser = await fetch(`${base}f.txt`, { headers: { accept: "text/html" } });
    assert.equal(browser.status, 401);
    assert.match(await browser.text(), /<form class="login" method="post" action="\/\?login">/);
    const wrong = await fetch(`${base}f.txt`, { headers: { authorization: "Bearer nope" } });
    assert.equal(wrong.status, 401);
    await wrong.body?.cancel();
    const put = await fetch(`${base}n.txt`, { method: "PUT", body: "x" });
    assert.equal(put.status, 401);
    await put.body?.cancel();
  });

  await t.step("bearer token", async () => {
    const auth = { authorization: `Bearer ${token}` };
    assert.equal(await (await fetch(`${base}f.txt`, { headers: auth })).text(), "payload");
    const put = await fetch(`${base}n.txt`, { method: "PUT", body: "x", headers: auth });
    assert.equal(put.status, 201);
    await put.body?.cancel();
  });

  await t.step("sign-in cookie: not the token, HttpOnly, SameSite=Strict", async () => {
    const form = (value: string) => new URLSearchParams({ token: value, next: "/f.txt" });
    const bad = await fetch(`${base}?login`, {
      method: "POST",
      body: form("wrong-token-wrong-token"),
      headers: { origin },
      redirect: "manual",
    });
    assert.equal(bad.status, 401);
    assert.match(await bad.text(), /Wrong token/);
    const cross = await fetch(`${base}?login`, {
      method: "POST",
      body: form(token),
      headers: { origin: "http://evil.example" },
      redirect: "manual",
    });
    assert.equal(cross.status, 403);
    await cross.body?.cancel();
    const good = await fetch(`${base}?login`, {
      method: "POST",
      body: form(token),
      headers: { origin },
      redirect: "manual",
    });
    assert.equal(good.status, 303);
    assert.equal(good.headers.get("location"), "/f.txt");
    await good.body?.cancel();
    const setCookie = good.headers.get("set-cookie") ?? "";
    assert.match(setCookie, /HttpOnly/);
    assert.match(setCookie, /SameSite=Strict/);
    assert.ok(!setCookie.includes(token), "the cookie carries the token");
    const cookie = setCookie.split(";")[0];

    assert.equal(await (await fetch(`${base}f.txt`, { headers: { cookie } })).text(), "payload");
    const forged = cookie.replace(/.$/, (c) => (c === "0" ? "1" : "0"));
    const refused = await fetch(`${base}f.txt`, { headers: { cookie: forged } });
    assert.equal(refused.status, 401);
    await refused.body?.cancel();

    // A change riding on the cookie must come from this server's own page.
    const csrf = await fetch(`${base}c.txt`, {
      method: "PUT",
      body: "x",
      headers: { cookie, origin: "http://evil.example" },
    });
    assert.equal(csrf.status, 403);
    await csrf.body?.cancel();
    const fetchSite = await fetch(`${base}c.txt`, {
      method: "PUT",
      body: "x",
      headers: { cookie, "sec-fetch-site": "cross-site" },
    });
    assert.equal(fetchSite.status, 403);
    await fetchSite.body?.cancel();
    const own = await fetch(`${base}c.txt`, {
      method: "PUT",
      body: "x",
      headers: { cookie, origin },
    });
    assert.equal(own.status, 201);
    await own.body?.cancel();

    const open = await fetch(`${base}?login`, {
      method: "POST",
      body: new URLSearchParams({ token, next: "//evil.example/" }),
      headers: { origin },
      redirect: "manual",
    });
    assert.equal(open.headers.get("location"), "/");
    await open.body?.cancel();
  });

  await t.step("a sign-in form without a length is read no further than its limit", async () => {
    // Anyone may post a sign-in form, so its body must not be held whole, however it is sent:
    // a chunked one (no Content-Length) that runs past the form limit is refused.
    let sent = 0;
    const chunk = new TextEncoder().encode("x".repeat(64 * 1024));
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent === 0) controller.enqueue(new TextEncoder().encode(`token=${token}&pad=`));
        // Bounded, so that a server reading it all ends too: 16 MiB.
        if (sent >= 256) return controller.close();
        sent++;
        controller.enqueue(chunk);
      },
    });
    const big = await fetch(`${base}?login`, {
      method: "POST",
      body,
      headers: { origin, "content-type": "application/x-www-form-urlencoded" },
      redirect: "manual",
    });
    assert.equal(big.status, 413);
    await big.body?.cancel();
    assert.ok(!big.headers.get("set-cookie"), "signed in with an oversized form");
  });
  await assertRootHolds(server.root, ["c.txt", "f.txt", "n.txt"]);
});

Deno.test("http: --http-public-read lets anyone read, uploads still need the token", async () => {
  const token = "another-token-0123456789abcdef";
  await using tokenFile = await makeTempFile(token);
  const { server, base } = await startHttp(["--token-file", tokenFile.path, "--http-public-read"]);
  await using _ = server;
  await Deno.writeTextFile(`${server.root}/f.txt`, "public");
  assert.equal(await (await fetch(`${base}f.txt`)).text(), "public");
  assert.equal((await (await fetch(`${base}?json`)).json()).length, 1);
  // Visitors see the listing and a way to sign in, not an upload area they cannot use yet.
  const page = await (await fetch(base, { headers: { accept: "text/html" } })).text();
  assert.match(page, /data-name="f.txt"/);
  assert.match(page, /href="\/\?login[^"]*">Sign in to upload/);
  assert.ok(!page.includes('id="upload"'), "an upload area before signing in");
  // Signing in from a folder comes back to that folder.
  await Deno.mkdir(`${server.root}/sub dir`);
  const sub = await (await fetch(`${base}sub%20dir/`, { headers: { accept: "text/html" } })).text();
  const link = /<a class="who" href="([^"]+)">Sign in to upload/.exec(sub);
  assert.ok(link, sub);
  const form = await (await fetch(new URL(link[1].replaceAll("&#38;", "&"), base))).text();
  const next = /name="next" value="([^"]*)"/.exec(form)?.[1];
  assert.equal(next, "/sub%20dir/");
  const signedIn = await fetch(`${base}?login`, {
    method: "POST",
    body: new URLSearchParams({ token, next: next! }),
    headers: { origin: new URL(base).origin },
    redirect: "manual",
  });
  assert.equal(signedIn.status, 303);
  assert.equal(signedIn.headers.get("location"), "/sub%20dir/");
  await signedIn.body?.cancel();
  const put = await fetch(`${base}n.txt`, { method: "PUT", body: "x" });
  assert.equal(put.status, 401);
  await put.body?.cancel();
  const authed = await fetch(`${base}n.txt`, {
    method: "PUT",
    body: "x",
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(authed.status, 201);
  await authed.body?.cancel();
});

Deno.test("http: requests over --max-connections are answered 503", async () => {
  const { server, base } = await startHttp(["--max-connections", "1"]);
  await using _ = server;
  await writeRandomFile(`${server.root}/big.bin`, 8 << 20);
  // One download held open, read no further than its first chunk.
  const held = await fetch(`${base}big.bin`);
  const reader = held.body!.getReader();
  await reader.read();
  const busy = await fetch(`${base}?json`);
  assert.equal(busy.status, 503);
  assert.equal(busy.headers.get("retry-after"), "5");
  await busy.body?.cancel();
  await reader.cancel();
  await waitFor("the held download to end", async () => {
    const again = await fetch(`${base}?json`);
    await again.body?.cancel();
    return again.status === 200;
  });
});

Deno.test("http: with TLS, the HTTP side is HTTPS with the same certificate", async () => {
  if (!HAS_CURL) return console.log("  skipped: curl is missing");
  await using dir = await makeTempDir();
  // --tls: the server makes its own certificate, kept in the state folder, which curl trusts.
  await Deno.writeTextFile(`${dir.path}/token`, "tls-token-0123456789abcdef");
  const { server, base } = await startHttp([
    "--tls",
    "--state-dir",
    `${dir.path}/state`,
    "--token-file",
    `${dir.path}/token`,
  ]);
  await using _ = server;
  assert.match(base, /^https:\/\//);
  // curl trusts the certificate alone: the state folder's file also holds the private key.
  const identity = await Deno.readTextFile(`${dir.path}/state/tls-identity.pem`);
  const certificate = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/.exec(
    identity,
  );
  assert.ok(certificate, "no certificate in the identity file");
  await Deno.writeTextFile(`${dir.path}/ferry.crt`, certificate[0]);
  await Deno.writeTextFile(`${server.root}/t.txt`, "over tls");
  const got = await curl([
    "--cacert",
    `${dir.path}/ferry.crt`,
    "-H",
    "Authorization: Bearer tls-token-0123456789abcdef",
    `${base}t.txt`,
  ]);
  assert.equal(got.code, 0, got.stderr);
  assert.equal(got.stdout, "over tls");
  // docs/http.md's recipe: fetch the certificate with openssl and check its fingerprint against
  // the one the server printed, in the same form.
  if (await commandWorks("openssl", ["version"])) {
    const { hostname, port } = new URL(base);
    const fetched = await runCommand("sh", [
      "-c",
      `openssl s_client -connect ${hostname}:${port} </dev/null 2>/dev/null | openssl x509 ` +
      "| openssl x509 -outform der | openssl dgst -sha256 -binary | base64 | tr -d '='",
    ]);
    const printed = (await server.waitForLog(/TLS certificate SHA256:/)).match(
      /SHA256:[A-Za-z0-9+/]{43}/,
    )![0];
    assert.equal(`SHA256:${decoder.decode(fetched.stdout).trim()}`, printed);
  } else console.log("  openssl missing: the fingerprint recipe is not checked");
  // Plain HTTP to the HTTPS port gets nothing.
  const plain = await curl(["-o", "/dev/null", base.replace("https:", "http:") + "t.txt"]);
  assert.notEqual(plain.code, 0);
  // The sign-in cookie is marked Secure over HTTPS.
  const login = await curl([
    "--cacert",
    `${dir.path}/ferry.crt`,
    "-D",
    "-",
    "-o",
    "/dev/null",
    "-H",
    `Origin: ${new URL(base).origin}`,
    "--data",
    "token=tls-token-0123456789abcdef",
    `${base}?login`,
  ]);
  assert.match(login.stdout, /set-cookie: ferry_session=[^\r\n]*; Secure/i);
});

Deno.test("http: command line: --http parses, --http-public-read needs a token", async () => {
  const bad = await runServer(["--http", "x:y:z"]);
  assertUsageError(bad, "ferry-server", { what: "bad", pattern: /Invalid --http/ });
  const orphan = await runServer(["--http", "0", "--http-public-read"]);
  assertUsageError(orphan, "ferry-server", {
    what: "orphan",
    pattern: /--http-public-read needs --token-file/,
  });
  // An HTTP port in use: one line naming it, and nothing left running.
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  await using root = await makeTempDir();
  const busy = await runServer([
    "0",
    "--root",
    root.path,
    "--http",
    `127.0.0.1:${(taken.addr as Deno.NetAddr).port}`,
  ]);
  assert.equal(busy.code, 1, busy.stderr);
  assert.match(
    busy.stderr,
    new RegExp(
      `Cannot serve HTTP on 127\\.0\\.0\\.1:${
        (taken.addr as Deno.NetAddr).port
      }: address already in use`,
    ),
  );
  assert.equal(busy.stderr.trim().split("\n").length, 1, busy.stderr);
  const qr = await runServer(["--http-qr"]);
  assertUsageError(qr, "ferry-server", { what: "qr", pattern: /--http-qr needs --http/ });
  const alone = await runServer(["--http-public-read"]);
  assertUsageError(alone, "ferry-server", {
    what: "alone",
    pattern: /--http-public-read needs --http/,
  });
});

Deno.test("http: --http-qr prints the page's address as a QR code a phone can scan", async () => {
  const { server, base } = await startHttp(["--http-qr"]);
  await using _ = server;
  const said = await server.waitForLog(/scan to open /);
  assert.ok(said.includes(`scan to open ${base} (this machine only`), said);
  // The code, read back from its half blocks (stderr is no terminal: light modules are drawn).
  const code = qrcode(0, "M");
  code.addData(base, "Byte");
  code.make();
  const count = code.getModuleCount();
  const size = count + 8;
  const at = server.lines.indexOf(said) + 1;
  await waitFor("the whole code", () => server.lines.length >= at + Math.ceil(size / 2));
  const light: boolean[][] = [];
  for (const line of server.lines.slice(at, at + Math.ceil(size / 2))) {
    const chars = [...line];
    assert.equal(chars.length, size, `a line of the code: ${JSON.stringify(line)}`);
    light.push(chars.map((c) => c === "█" || c === "▀"), chars.map((c) => c === "█" || c === "▄"));
  }
  const dark = (r: number, c: number) => !light[r + 4][c + 4];
  for (let r = -4; r < count + 4; r++) {
    for (let c = -4; c < count + 4; c++) {
      const inside = r >= 0 && c >= 0 && r < count && c < count;
      assert.equal(dark(r, c), inside && code.isDark(r, c), `module ${r},${c}`);
    }
  }
  // `deno task serve` lets the server list this machine's addresses for it, and only for it.
  assert.deepEqual((await serverAccessOf({ root: server.root, httpQr: true })).sys, [
    "networkInterfaces",
  ]);
  assert.equal((await serverAccessOf({ root: server.root })).sys, undefined);
  // The three finder patterns the QR standard puts in the corners: a dark ring, a light ring,
  // a dark 3x3 core.
  for (const [top, left] of [[0, 0], [0, count - 7], [count - 7, 0]]) {
    for (let r = 0; r < 7; r++) {
      for (let c = 0; c < 7; c++) {
        const ring = Math.max(Math.abs(r - 3), Math.abs(c - 3));
        assert.equal(dark(top + r, left + c), ring !== 2, `finder at ${top},${left}`);
      }
    }
  }
});

/** The status of `METHOD PATH` sent with the given Host, as a same-origin page would send it. */
function statusWithHost(base: string, method: string, path: string, host: string) {
  return rawStatus(base, method, path, {
    host,
    headers: { Origin: `http://${host}`, "Sec-Fetch-Site": "same-origin", "Content-Length": "0" },
  });
}

Deno.test("http on loopback refuses a Host that is a name, as a rebound DNS name would send", async () => {
  const { server, base } = await startHttp();
  await using _ = server;
  await Deno.writeTextFile(`${server.root}/precious.txt`, "mine");
  const port = new URL(base).port;
  // A page of evil.example whose name now resolves to 127.0.0.1: to the browser, same origin.
  for (
    const [method, path] of [["GET", "/precious.txt"], ["GET", "/"], ["DELETE", "/precious.txt"]]
  ) {
    assert.equal(await statusWithHost(base, method, path, `evil.example:${port}`), 403, method);
  }
  assert.equal(await Deno.readTextFile(`${server.root}/precious.txt`), "mine", "not removed");
  for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `app.localhost:${port}`]) {
    assert.equal(await statusWithHost(base, "GET", "/precious.txt", host), 200, host);
  }
  await server.waitForLog(/refused .*is not its address/);
});
