/**
 * Integration tests of issue 15's server certificate: `--tls` makes a non-CA certificate on first
 * start, owner-only in a state folder outside the root, names this machine's addresses, and
 * reuses it; `deno task serve --tls` grants that folder; and certificates clients would refuse
 * are refused at start.
 *
 * @module
 */

import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { join } from "node:path";
import { makeSelfSignedCertificate, pemCertificates } from "../lib/x509.ts";
import {
  assertFailure,
  assertSuccess,
  assertUsageError,
  collectLines,
  ferry,
  makeTempDir,
  REPO_ROOT,
  runClient,
  runServer,
  startServer,
  storedFiles,
} from "./harness.ts";
import { EC_NEW_KEY, openssl } from "./pki.ts";
import { HAS_OPENSSL, startTlsServer } from "./tls_setup.ts";

const decoder = new TextDecoder();

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
