/**
 * Integration tests of issue 15, TLS with zero setup, against the real server and client: the
 * server's own certificate (made on first start, owner-only outside the root, reused), the
 * client's pins (`--fingerprint`, trust on first use, `trust`, a changed certificate), the
 * operator's certificates refused at start, and the recipes of docs/security.md, run with
 * openssl where it is installed.
 *
 * @module
 */

import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { join } from "node:path";
import { rememberServer } from "../lib/known_servers.ts";
import { makeSelfSignedCertificate, pemCertificates } from "../lib/x509.ts";
import {
  assertFailure,
  assertOneStderrLine,
  assertSuccess,
  assertUsageError,
  collectLines,
  commandWorks,
  ferry,
  makeTempDir,
  REPO_ROOT,
  runClient,
  runCommand,
  runServer,
  type ServerProcess,
  startServer,
  storedFiles,
  type TempDir,
} from "./harness.ts";
import { EC_NEW_KEY, openssl } from "./pki.ts";

const FINGERPRINT = /SHA256:[A-Za-z0-9+/]{43}/;
/** A request in the server's log: `TIME PEER put|get|list|... NAME ...`. */
const REQUEST_LOG = /^\d{4}-\d\d-\d\dT\S+ \S+ [a-z]+ (?:"|- )/;
const HAS_OPENSSL = await commandWorks("openssl", ["version"]);
const decoder = new TextDecoder();

/** A client's private config folder: where `trust` and `--fingerprint` remember servers. */
async function clientHome(): Promise<
  TempDir & { options: { env: Record<string, string> } }
> {
  const dir = await makeTempDir({ prefix: "ferry_home_" });
  return Object.assign(dir, {
    options: { env: { XDG_CONFIG_HOME: dir.path } },
  });
}

/** Starts a `--tls` server keeping its key in `stateDir`; resolves with it and its fingerprint. */
async function startTlsServer(
  stateDir: string,
  extra: { root?: string; args?: string[] } = {},
): Promise<{ server: ServerProcess; fingerprint: string; command: string[] }> {
  const server = await startServer({
    root: extra.root,
    args: ["--tls", "--state-dir", stateDir, ...(extra.args ?? [])],
  });
  const line = await server.waitForLog(/clients connect with: /);
  const fingerprint = (await server.waitForLog(/TLS certificate SHA256:/)).match(FINGERPRINT)![0];
  const command = line.replace(/^.*clients connect with: ferry /, "").split(" ");
  return { server, fingerprint, command };
}

// ----------------------------------------------------------------------- the server's own cert

Deno.test("--tls makes a non-CA certificate on first start, owner-only outside the root, and reuses it", async () => {
  await using base = await makeTempDir();
  const stateDir = join(base.path, "state", "ferry");
  const root = join(base.path, "root");
  let first: string;
  {
    const { server, fingerprint, command } = await startTlsServer(stateDir, { root });
    await using _ = server;
    first = fingerprint;
    assert.ok(server.lines.some((l) => /made now and kept in/.test(l)), server.lines.join("\n"));
    // The banner's command, pasted as it is (with the port it names), lists the files.
    assert.deepEqual(command.slice(0, 2), ["--fingerprint", fingerprint]);
    assert.equal(command[3], String(server.port));
    await Deno.writeTextFile(join(root, "hello.txt"), "hi\n");
    const listed = await runClient(command);
    assertSuccess(listed, "the banner's client command");
    assert.equal(decoder.decode(listed.stdout), "hello.txt\n");
  }
  const file = join(stateDir, "tls-identity.pem");
  assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600, "identity file mode");
  assert.equal((await Deno.stat(stateDir)).mode! & 0o777, 0o700, "state folder mode");
  assert.deepEqual(await storedFiles(root), ["hello.txt"], "nothing of the key in the root");
  const pem = await Deno.readTextFile(file);
  const cert = new X509Certificate(pemCertificates(pem)[0]);
  assert.equal(cert.ca, false, "not a CA");
  for (const name of ["DNS:localhost", "IP Address:127.0.0.1", "IP Address:::1"]) {
    assert.ok(cert.subjectAltName?.includes(name), `${name} in ${cert.subjectAltName}`);
  }
  if (Deno.permissions.querySync({ name: "sys", kind: "hostname" }).state === "granted") {
    assert.ok(cert.subjectAltName?.includes(`DNS:${Deno.hostname()}`), "the machine's name");
  } else console.log("no --allow-sys: the machine's name is not checked");
  // A restart keeps the key, so clients that pinned it still connect.
  const again = await startTlsServer(stateDir, { root });
  await using _ = again.server;
  assert.equal(again.fingerprint, first, "same fingerprint after a restart");
  assert.ok(
    again.server.lines.some((l) => l.includes(`(from ${file})`)),
    again.server.lines.join("\n"),
  );
  assertSuccess(
    await ferry(again.server, ["--fingerprint", first, "list"]),
    "pinned after restart",
  );
});

Deno.test({
  name: "--tls on every address names this machine's addresses",
  // The test itself needs --allow-sys to list them (deno task test gives it).
  ignore:
    Deno.permissions.querySync({ name: "sys", kind: "networkInterfaces" }).state !== "granted",
}, async () => {
  await using base = await makeTempDir();
  const { server } = await startTlsServer(join(base.path, "state"), {
    args: ["--host", "0.0.0.0"],
  });
  await using _ = server;
  const pem = await Deno.readTextFile(join(base.path, "state", "tls-identity.pem"));
  const names = new X509Certificate(pemCertificates(pem)[0]).subjectAltName ?? "";
  for (const nic of Deno.networkInterfaces().filter((n) => n.family === "IPv4")) {
    assert.ok(names.includes(`IP Address:${nic.address}`), `${nic.address} in ${names}`);
  }
});

Deno.test("--tls keeps its key in $XDG_STATE_HOME/ferry by default, and refuses one others may read", async () => {
  await using base = await makeTempDir();
  const options = {
    args: ["--tls"],
    env: { XDG_STATE_HOME: base.path },
  };
  const file = join(base.path, "ferry", "tls-identity.pem");
  {
    await using server = await startServer(options);
    const line = await server.waitForLog(/TLS certificate SHA256:/);
    assert.ok(line.includes(`made now and kept in ${file}`), line);
  }
  await Deno.chmod(file, 0o644);
  const refused = await runServer(["0", "--root", join(base.path, "root"), "--tls"], {
    env: options.env,
  });
  assertFailure(refused, /others may read it \(mode 644\): chmod 600 /, { what: "mode 644" });
  // Without the environment the default cannot be found: the server says what to do instead.
  const blind = await runServer(["0", "--root", join(base.path, "root"), "--tls"], {
    permissions: ["--deny-env=XDG_STATE_HOME,HOME"],
  });
  assertFailure(blind, /--tls needs a folder for its key.*--state-dir DIR/, { what: "no env" });
});

Deno.test("deno task serve --tls grants the server its state folder, and the pinned client connects", async () => {
  await using base = await makeTempDir();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", "serve", "0", "--root", join(base.path, "root"), "--tls"],
    cwd: REPO_ROOT,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1", XDG_STATE_HOME: join(base.path, "state") },
  }).spawn();
  const { lines, done, firstMatch } = collectLines(child.stderr);
  try {
    const match = await firstMatch(/clients connect with: ferry (.*)$/);
    assert.ok(match, `no client command; the task said:\n${lines.join("\n")}`);
    assertSuccess(await runClient(match[1].split(" ")), "the pasted command");
    assert.ok(lines.some((l) => l.includes(join(base.path, "state", "ferry", "tls-identity.pem"))));
  } finally {
    child.kill("SIGINT");
    await child.status;
    await done;
  }
});

Deno.test("--tls refuses a state folder inside the root, and --state-dir needs --tls", async () => {
  await using base = await makeTempDir();
  const root = join(base.path, "root");
  const refused = await runServer([
    "0",
    "--root",
    root,
    "--tls",
    "--state-dir",
    join(root, "keys"),
  ]);
  assertFailure(refused, /inside the served folder .*choose a --state-dir outside it/, {
    what: "state inside root",
  });
  assertUsageError(await runServer(["0", "--state-dir", base.path]), "ferry-server", {
    what: "--state-dir alone",
    pattern: /--state-dir goes with --tls/,
  });
});

// -------------------------------------------------------------------------------- the client

Deno.test("first use: --tls to an unknown server fails with its fingerprint; trust, then it connects", async () => {
  await using base = await makeTempDir();
  await using home = await clientHome();
  const { server, fingerprint } = await startTlsServer(join(base.path, "state"));
  await using _ = server;
  const first = await ferry(server, ["--tls", "list"], home.options);
  assertFailure(first, /is not known and no CA vouches for its certificate/, { what: "first use" });
  assert.ok(first.stderr.includes(`its fingerprint is ${fingerprint}`), first.stderr);
  const trust = first.stderr.match(/'ferry (--fingerprint \S+ \S+ \d+ trust)'/);
  assert.ok(trust, `no trust command in: ${first.stderr}`);
  // The command it suggests, pasted as it is.
  const trusted = await runClient(trust[1].split(" "), home.options);
  assertSuccess(trusted, "trust");
  assertOneStderrLine(
    trusted,
    new RegExp(`trusted 127\\.0\\.0\\.1:${server.port} as ${fingerprint.replace(/[+/]/g, "\\$&")}`),
    {
      what: "trust",
    },
  );
  const file = join(home.path, "ferry", "known_servers");
  assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600, "known_servers mode");
  const listed = await ferry(server, ["--tls", "list"], home.options);
  assertSuccess(listed, "--tls after trust");
  assert.equal(listed.stderr, "");
  // Trusted per host and port: another spelling of the same server is not known yet.
  assertFailure(
    await runClient(["localhost", String(server.port), "--tls", "list"], home.options),
    /localhost:\d+ is not known/,
    { what: "other name" },
  );
});

Deno.test("the two-command recipe: the pasted --fingerprint is remembered, later commands need only --tls", async () => {
  await using base = await makeTempDir();
  await using home = await clientHome();
  const { server, fingerprint, command } = await startTlsServer(join(base.path, "state"));
  await using _ = server;
  const pasted = await runClient(command, home.options);
  assertSuccess(pasted, "the server's command");
  assertOneStderrLine(
    pasted,
    /^ferry: remembered 127\.0\.0\.1:\d+ as SHA256:\S+ in .*known_servers$/,
    {
      what: "pasted",
    },
  );
  assert.ok(pasted.stderr.includes(fingerprint), pasted.stderr);
  const later = await ferry(server, ["--tls", "list"], home.options);
  assertSuccess(later, "--tls after the pasted command");
  assert.equal(later.stderr, "", "a remembered server is not announced again");
});

Deno.test("trust without --fingerprint remembers whatever certificate answers, and says which", async () => {
  await using base = await makeTempDir();
  await using home = await clientHome();
  const { server, fingerprint } = await startTlsServer(join(base.path, "state"));
  await using _ = server;
  const trusted = await ferry(server, ["trust"], home.options);
  assertSuccess(trusted, "trust");
  assertOneStderrLine(trusted, /trusted 127\.0\.0\.1:\d+ as SHA256:/, { what: "trust" });
  assert.ok(trusted.stderr.includes(fingerprint), trusted.stderr);
  // Reading the certificate sends no request.
  assert.ok(!server.lines.some((l) => REQUEST_LOG.test(l)), server.lines.join("\n"));
  assertSuccess(await ferry(server, ["--tls", "list"], home.options), "--tls after trust");
});

Deno.test("--fingerprint pins by IP address and by a name the certificate does not carry", async () => {
  await using base = await makeTempDir();
  // A certificate naming only a name no one connects by.
  const made = await makeSelfSignedCertificate({ commonName: "x", names: ["elsewhere.invalid"] });
  await Deno.writeTextFile(join(base.path, "cert.pem"), made.cert);
  await Deno.writeTextFile(join(base.path, "key.pem"), made.key);
  await using server = await startServer({
    args: ["--tls-cert", join(base.path, "cert.pem"), "--tls-key", join(base.path, "key.pem")],
  });
  const fingerprint = (await server.waitForLog(/TLS certificate SHA256:/)).match(FINGERPRINT)![0];
  await Deno.writeTextFile(join(base.path, "up.txt"), "pinned\n");
  for (const host of ["127.0.0.1", "localhost"]) {
    // Nowhere to remember it (the tests' config folder cannot be made): the pin alone must do,
    // every time.
    const put = await runClient([
      host,
      String(server.port),
      "--fingerprint",
      fingerprint,
      "put",
      join(base.path, "up.txt"),
      `${host}.txt`,
    ]);
    assertSuccess(put, `pinned put via ${host}`);
    const got = await runClient([
      host,
      String(server.port),
      "--fingerprint",
      fingerprint,
      "get",
      `${host}.txt`,
      "-",
    ]);
    assertSuccess(got, `pinned get via ${host}`);
    assert.equal(decoder.decode(got.stdout), "pinned\n");
  }
  // Without the pin, neither the system's roots nor the name vouch for it.
  assertFailure(await ferry(server, ["--tls", "list"]), /no CA vouches/, { what: "unpinned" });
});

Deno.test("--fingerprint that does not match is refused with both fingerprints, and nothing is sent", async () => {
  await using base = await makeTempDir();
  await using home = await clientHome();
  const { server, fingerprint } = await startTlsServer(join(base.path, "state"));
  await using _ = server;
  const other = await makeSelfSignedCertificate({ commonName: "other", names: ["localhost"] });
  const wrong = (await import("../lib/x509.ts")).formatFingerprint(pemCertificates(other.cert)[0]);
  await Deno.writeTextFile(join(base.path, "up.txt"), "secret\n");
  const put = await ferry(
    server,
    ["--fingerprint", wrong, "put", join(base.path, "up.txt")],
    home.options,
  );
  assertFailure(put, /nothing was sent/, { what: "mismatched pin" });
  assert.ok(put.stderr.includes(fingerprint) && put.stderr.includes(wrong), put.stderr);
  assert.deepEqual(await storedFiles(server.root), []);
  assert.ok(!server.lines.some((l) => REQUEST_LOG.test(l)), server.lines.join("\n"));
  // Nothing was remembered either: the unknown server is still unknown.
  assertFailure(await ferry(server, ["--tls", "list"], home.options), /is not known/, {
    what: "after mismatch",
  });
  // Control: the right pin makes a request, and the log shows it as one.
  assertSuccess(await ferry(server, ["--fingerprint", fingerprint, "list"]), "right pin");
  await server.waitForLog(REQUEST_LOG);
});

Deno.test("a changed certificate is refused loudly, with how to trust the new one", async () => {
  await using base = await makeTempDir();
  await using home = await clientHome();
  const { server, fingerprint } = await startTlsServer(join(base.path, "state"));
  await using _ = server;
  // What the client remembered for this host and port is another certificate: as if the server
  // had been replaced since, or someone stood in between.
  const old = await makeSelfSignedCertificate({ commonName: "old", names: ["localhost"] });
  const known = join(home.path, "ferry", "known_servers");
  await rememberServer(known, server.host, server.port, pemCertificates(old.cert)[0]);
  await Deno.writeTextFile(join(base.path, "up.txt"), "secret\n");
  const put = await ferry(server, ["--tls", "put", join(base.path, "up.txt")], home.options);
  assertFailure(put, /WARNING: THE CERTIFICATE OF 127\.0\.0\.1:\d+ HAS CHANGED/, {
    what: "changed",
  });
  assert.ok(put.stderr.includes(`is now ${fingerprint}`), put.stderr);
  assert.deepEqual(await storedFiles(server.root), []);
  assert.ok(!server.lines.some((l) => REQUEST_LOG.test(l)), server.lines.join("\n"));
  const update = put.stderr.match(/'ferry (--fingerprint \S+ \S+ \d+ trust)'/);
  assert.ok(update, put.stderr);
  assertSuccess(await runClient(update[1].split(" "), home.options), "trust the new one");
  assertSuccess(
    await ferry(server, ["--tls", "put", join(base.path, "up.txt")], home.options),
    "after update",
  );
});

Deno.test("--fingerprint with a bad value is a usage error", async () => {
  for (const bad of ["SHA256:short", "md5:abc", "SHA256:" + "A".repeat(44)]) {
    assertUsageError(await runClient(["127.0.0.1", "9", "--fingerprint", bad, "list"]), "ferry", {
      what: bad,
      pattern: /Invalid --fingerprint/,
    });
  }
});

// ----------------------------------------------------------- the operator's certificates

Deno.test("certificates clients would refuse are refused at start, in one line that says why", async () => {
  await using dir = await makeTempDir();
  const day = 86400_000;
  const write = async (name: string, made: { cert: string; key: string }) => {
    await Deno.writeTextFile(join(dir.path, `${name}.pem`), made.cert);
    await Deno.writeTextFile(join(dir.path, `${name}.key`), made.key);
  };
  const names = ["localhost", "127.0.0.1"];
  await write(
    "expired",
    await makeSelfSignedCertificate({
      commonName: "e",
      names,
      notBefore: new Date(Date.now() - 10 * day),
      notAfter: new Date(Date.now() - day),
    }),
  );
  await write(
    "future",
    await makeSelfSignedCertificate({
      commonName: "f",
      names,
      notBefore: new Date(Date.now() + day),
    }),
  );
  await write("good", await makeSelfSignedCertificate({ commonName: "g", names }));
  await write("other", await makeSelfSignedCertificate({ commonName: "o", names }));
  await write("nameless", await makeSelfSignedCertificate({ commonName: "n", names: [] }));
  const cases: [string, string, string, RegExp][] = [
    ["expired", "expired.pem", "expired.key", /it expired on .*docs\/security\.md/],
    ["not yet valid", "future.pem", "future.key", /not valid until .*clock/],
    ["key mismatch", "good.pem", "other.key", /the key is not the certificate's key/],
    ["no certificate", "good.key", "good.key", /holds no PEM certificate/],
    ["no names", "nameless.pem", "nameless.key", /names no host \(no subjectAltName\)/],
  ];
  if (HAS_OPENSSL) {
    // The certificate almost everyone makes first: openssl marks it as a CA.
    await openssl([
      "req",
      "-x509",
      ...EC_NEW_KEY,
      "-keyout",
      "ca.key",
      "-out",
      "ca.pem",
      "-days",
      "2",
      "-subj",
      "/CN=localhost",
      "-addext",
      "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ], dir.path);
    cases.push([
      "CA",
      "ca.pem",
      "ca.key",
      /it is a CA certificate .*CaUsedAsEndEntity.*--tls alone/,
    ]);
  } else {
    console.log("openssl missing: the CA-certificate case is skipped");
  }
  for (const [what, cert, key, pattern] of cases) {
    const result = await runServer([
      "0",
      "--root",
      join(dir.path, "root"),
      "--tls-cert",
      cert,
      "--tls-key",
      key,
    ], { cwd: dir.path });
    assertFailure(result, pattern, { what });
  }
});

// ------------------------------------------------------------ docs/security.md's recipes

Deno.test({
  name: "docs/security.md: a self-signed certificate made with openssl, pinned or trusted as --ca",
  ignore: !HAS_OPENSSL,
  async fn() {
    await using dir = await makeTempDir();
    // The recipe, as written in docs/security.md.
    await openssl([
      "req",
      "-x509",
      ...EC_NEW_KEY,
      "-keyout",
      "key.pem",
      "-out",
      "cert.pem",
      "-days",
      "825",
      "-subj",
      "/CN=localhost",
      "-addext",
      "basicConstraints=critical,CA:FALSE",
      "-addext",
      "keyUsage=critical,digitalSignature",
      "-addext",
      "extendedKeyUsage=serverAuth",
      "-addext",
      "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ], dir.path);
    const printed = await runCommand("openssl", [
      "x509",
      "-in",
      "cert.pem",
      "-noout",
      "-fingerprint",
      "-sha256",
    ], { cwd: dir.path });
    const hex = decoder.decode(printed.stdout).trim().replace(/^.*=/, "");
    await using server = await startServer({
      args: ["--tls-cert", join(dir.path, "cert.pem"), "--tls-key", join(dir.path, "key.pem")],
    });
    const fingerprint = (await server.waitForLog(/TLS certificate SHA256:/)).match(FINGERPRINT)![0];
    // openssl's hex form pins the same certificate as ferry's own form.
    assertSuccess(await ferry(server, ["--fingerprint", hex, "list"]), "pinned by openssl's hex");
    assertSuccess(await ferry(server, ["--fingerprint", fingerprint, "list"]), "pinned");
    assertSuccess(
      await runClient([
        "localhost",
        String(server.port),
        "--ca",
        join(dir.path, "cert.pem"),
        "list",
      ]),
      "--ca by name",
    );
  },
});

Deno.test({
  name: "docs/security.md: a small private CA, and a certificate chain as public CAs issue them",
  ignore: !HAS_OPENSSL,
  async fn() {
    await using dir = await makeTempDir();
    const run = (args: string[]) => openssl(args, dir.path);
    // The recipe, as written in docs/security.md: a CA, then a server certificate it signs.
    await run([
      "req",
      "-x509",
      ...EC_NEW_KEY,
      "-keyout",
      "ca.key",
      "-out",
      "ca.pem",
      "-days",
      "3650",
      "-subj",
      "/CN=My ferry CA",
    ]);
    await run([
      "req",
      ...EC_NEW_KEY,
      "-keyout",
      "server.key",
      "-out",
      "server.csr",
      "-subj",
      "/CN=localhost",
    ]);
    await Deno.writeTextFile(
      join(dir.path, "server.ext"),
      "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    );
    await run([
      "x509",
      "-req",
      "-in",
      "server.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-days",
      "825",
      "-extfile",
      "server.ext",
      "-out",
      "server.pem",
    ]);
    {
      await using server = await startServer({
        args: [
          "--tls-cert",
          join(dir.path, "server.pem"),
          "--tls-key",
          join(dir.path, "server.key"),
        ],
      });
      for (const host of ["localhost", "127.0.0.1"]) {
        assertSuccess(
          await runClient([host, String(server.port), "--ca", join(dir.path, "ca.pem"), "list"]),
          `private CA via ${host}`,
        );
      }
    }
    // A public CA's certificate comes as a chain (fullchain.pem: the server's, then an
    // intermediate's) and a key: given as they are, a client that trusts the root connects.
    await Deno.writeTextFile(
      join(dir.path, "inter.ext"),
      "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\n",
    );
    await run([
      "req",
      ...EC_NEW_KEY,
      "-keyout",
      "inter.key",
      "-out",
      "inter.csr",
      "-subj",
      "/CN=Intermediate",
    ]);
    await run([
      "x509",
      "-req",
      "-in",
      "inter.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-days",
      "30",
      "-extfile",
      "inter.ext",
      "-out",
      "inter.pem",
    ]);
    await run([
      "req",
      ...EC_NEW_KEY,
      "-keyout",
      "privkey.pem",
      "-out",
      "leaf.csr",
      "-subj",
      "/CN=localhost",
    ]);
    await run([
      "x509",
      "-req",
      "-in",
      "leaf.csr",
      "-CA",
      "inter.pem",
      "-CAkey",
      "inter.key",
      "-CAcreateserial",
      "-days",
      "30",
      "-extfile",
      "server.ext",
      "-out",
      "leaf.pem",
    ]);
    const chain = (await Deno.readTextFile(join(dir.path, "leaf.pem"))) +
      (await Deno.readTextFile(join(dir.path, "inter.pem")));
    await Deno.writeTextFile(join(dir.path, "fullchain.pem"), chain);
    await using server = await startServer({
      args: [
        "--tls-cert",
        join(dir.path, "fullchain.pem"),
        "--tls-key",
        join(dir.path, "privkey.pem"),
      ],
    });
    assertSuccess(
      await runClient(["localhost", String(server.port), "--ca", join(dir.path, "ca.pem"), "list"]),
      "full chain",
    );
  },
});
