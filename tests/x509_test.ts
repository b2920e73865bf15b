/**
 * Unit tests of lib/x509.ts: the fingerprint forms ferry prints and accepts, and the certificates
 * it makes, read back by node:crypto (openssl's parser) and served by rustls.
 *
 * @module
 */

import assert from "node:assert/strict";
import { createHash, createPrivateKey, X509Certificate } from "node:crypto";
import {
  formatFingerprint,
  makeSelfSignedCertificate,
  parseFingerprint,
  pemCertificates,
} from "../lib/x509.ts";

Deno.test("fingerprints: ssh's base64 form out; that, or openssl's hex form, in", async () => {
  const der = new TextEncoder().encode("not really a certificate");
  const digest = createHash("sha256").update(der).digest();
  const printed = await formatFingerprint(der);
  assert.equal(printed, "SHA256:" + digest.toString("base64").replace(/=+$/, ""));
  assert.equal(printed.length, 7 + 43);
  const hex = digest.toString("hex");
  const colons = hex.toUpperCase().match(/../g)!.join(":");
  for (const form of [printed, printed + "=", hex, colons, `sha256 Fingerprint=${colons}`]) {
    assert.equal(parseFingerprint(form), printed, form);
  }
  for (const bad of ["", "SHA256:", "SHA1:abc", hex.slice(2), printed.slice(0, -1), "MD5:" + hex]) {
    assert.equal(parseFingerprint(bad), null, bad);
  }
  // 43 base64 characters carry two bits too many; a last character that sets them is not ours.
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const sloppy = printed.slice(0, -1) + alphabet[alphabet.indexOf(printed.at(-1)!) | 1];
  assert.equal(parseFingerprint(sloppy), null, sloppy);
});

Deno.test("a made certificate: a non-CA leaf with its names, its key, and rustls serves it", async () => {
  const made = await makeSelfSignedCertificate({
    commonName: "ferry-server on test",
    names: [
      "localhost",
      "127.0.0.1",
      "::1",
      "fe80::1%eth0",
      "10.1.2.3",
      "LOCALHOST",
      "host.example",
    ],
  });
  const der = pemCertificates(made.cert);
  assert.equal(der.length, 1);
  const cert = new X509Certificate(der[0]);
  assert.equal(cert.ca, false);
  assert.equal(cert.subject, "CN=ferry-server on test");
  assert.equal(cert.issuer, cert.subject, "self-signed");
  assert.ok(cert.verify(cert.publicKey), "signed by its own key");
  assert.ok(cert.checkPrivateKey(createPrivateKey(made.key)), "the key is the certificate's");
  assert.equal(
    cert.subjectAltName,
    "DNS:localhost, IP Address:127.0.0.1, IP Address:::1, IP Address:fe80::1, " +
      "IP Address:10.1.2.3, DNS:host.example",
  );
  assert.ok(cert.validFromDate.getTime() < Date.now());
  assert.equal(cert.validToDate.toISOString(), "9999-12-31T23:59:59.000Z");
  assert.equal(await formatFingerprint(der[0]), parseFingerprint(cert.fingerprint256));

  const listener = Deno.listenTls({ hostname: "127.0.0.1", port: 0, ...made });
  const serving = (async () => {
    const conn = await listener.accept();
    await conn.write(new TextEncoder().encode("hi"));
    conn.close();
  })();
  const conn = await Deno.connectTls({
    hostname: "127.0.0.1",
    port: (listener.addr as Deno.NetAddr).port,
    caCerts: [made.cert],
  });
  const buffer = new Uint8Array(2);
  assert.equal(await conn.read(buffer), 2, "a rustls client trusts it as its own anchor");
  conn.close();
  await serving;
  listener.close();
});
