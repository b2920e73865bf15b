/**
 * The certificate recipes of docs/security.md, run with openssl where it is installed: a
 * self-signed certificate pinned or trusted as `--ca`, and a small private CA with a chain.
 *
 * @module
 */

import { join } from "node:path";
import {
  assertSuccess,
  ferry,
  makeTempDir,
  runClient,
  runCommand,
  startServer,
} from "./harness.ts";
import { EC_NEW_KEY, openssl } from "./pki.ts";
import { FINGERPRINT, HAS_OPENSSL } from "./tls_setup.ts";

const decoder = new TextDecoder();

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
