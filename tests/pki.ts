/**
 * A throw-away PKI for the TLS tests: a CA, a leaf certificate it signed for localhost,
 * 127.0.0.1 and ::1, and an unrelated second CA, made with openssl at test time (never
 * committed) in a temporary folder that goes when the PKI is disposed.
 *
 * @module
 */

import { makeTempDir, runCommand, type TempDir } from "./harness.ts";

/** Files of a test PKI: a CA, a leaf it signed for localhost, and an unrelated second CA. */
export interface Pki extends AsyncDisposable {
  /** The CA that signed the server certificate. */
  ca: string;
  /** Server certificate (leaf) for localhost, 127.0.0.1 and ::1. */
  cert: string;
  /** Server private key. */
  key: string;
  /** A CA that signed nothing the server has. */
  otherCa: string;
}

/** openssl's arguments for a new P-256 key, unencrypted: what every certificate here is made with. */
export const EC_NEW_KEY: readonly string[] = [
  "-newkey",
  "ec",
  "-pkeyopt",
  "ec_paramgen_curve:prime256v1",
  "-nodes",
];

/** Runs openssl in `cwd`; throws with its stderr unless it succeeds. */
export async function openssl(args: string[], cwd: string): Promise<void> {
  const output = await runCommand("openssl", args, { cwd });
  if (output.code !== 0) throw new Error(`openssl ${args.join(" ")} failed:\n${output.stderr}`);
}

/** A CA and a leaf certificate signed by it, made now in a temporary folder. */
export async function makePki(): Promise<Pki> {
  const dir: TempDir = await makeTempDir({ prefix: "ferry_pki_" });
  try {
    for (const [name, cn] of [["ca", "ferry test CA"], ["other-ca", "ferry other CA"]]) {
      await openssl([
        "req",
        "-x509",
        ...EC_NEW_KEY,
        "-keyout",
        `${name}.key`,
        "-out",
        `${name}.pem`,
        "-days",
        "2",
        "-subj",
        `/CN=${cn}`,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
      ], dir.path);
    }
    await openssl([
      "req",
      ...EC_NEW_KEY,
      "-keyout",
      "server.key",
      "-out",
      "server.csr",
      "-subj",
      "/CN=localhost",
    ], dir.path);
    await Deno.writeTextFile(
      `${dir.path}/leaf.ext`,
      [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature",
        "extendedKeyUsage=serverAuth",
        "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1",
      ].join("\n") + "\n",
    );
    await openssl([
      "x509",
      "-req",
      "-in",
      "server.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-set_serial",
      "0x" + crypto.randomUUID().replaceAll("-", "").slice(0, 16),
      "-days",
      "2",
      "-extfile",
      "leaf.ext",
      "-out",
      "server.pem",
    ], dir.path);
  } catch (error) {
    await dir[Symbol.asyncDispose]();
    throw error;
  }
  return {
    ca: `${dir.path}/ca.pem`,
    cert: `${dir.path}/server.pem`,
    key: `${dir.path}/server.key`,
    otherCa: `${dir.path}/other-ca.pem`,
    [Symbol.asyncDispose]: () => dir[Symbol.asyncDispose](),
  };
}

/** The server options that serve TLS with the PKI's leaf certificate and key. */
export function tlsArgs(pki: Pki): string[] {
  return ["--tls-cert", pki.cert, "--tls-key", pki.key];
}
