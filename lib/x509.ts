/**
 * X.509 certificates without openssl: makes a self-signed ECDSA P-256 server certificate (a leaf,
 * never a CA), computes and formats SHA-256 certificate fingerprints, and converts between PEM and
 * DER. The DER encoder covers only what a certificate needs.
 *
 * @module
 */

// Web Crypto and the Uint8Array base64 and hex methods, not node:crypto and node:buffer: every
// client start loads this module, and those two cost each start tens of milliseconds.

/** Prefix of a fingerprint as ferry prints and accepts it. */
export const FINGERPRINT_PREFIX = "SHA256:";

/**
 * The SHA-256 fingerprint of a DER certificate in ferry's form: `SHA256:` and the unpadded base64
 * of the digest, as ssh prints host keys.
 *
 * @example
 * ```ts
 * const pem = await Deno.readTextFile("cert.pem");
 * const line = await formatFingerprint(pemCertificates(pem)[0]); // "SHA256:Ab3...x9Q"
 * ```
 */
export async function formatFingerprint(der: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(der)));
  return FINGERPRINT_PREFIX + digest.toBase64({ omitPadding: true });
}

/**
 * Parses a fingerprint the user typed: ferry's own `SHA256:` + base64 form, or the hex form
 * openssl prints (`sha256 Fingerprint=AB:CD:...`, colons optional). Returns the canonical form,
 * or null when the text is neither.
 */
export function parseFingerprint(text: string): string | null {
  const trimmed = text.trim().replace(/^sha256 fingerprint=/i, "");
  const hex = trimmed.replace(/^sha256:/i, "").replaceAll(":", "");
  if (/^[0-9a-f]{64}$/i.test(hex)) {
    return FINGERPRINT_PREFIX + Uint8Array.fromHex(hex).toBase64({ omitPadding: true });
  }
  if (!trimmed.startsWith(FINGERPRINT_PREFIX)) return null;
  const body = trimmed.slice(FINGERPRINT_PREFIX.length).replace(/=+$/, "");
  if (!/^[A-Za-z0-9+/]{43}$/.test(body)) return null;
  // 43 characters carry 258 bits: the last one must leave the two spare bits at zero.
  let bytes: Uint8Array;
  try {
    bytes = Uint8Array.fromBase64(body);
  } catch {
    return null;
  }
  if (bytes.length !== 32 || bytes.toBase64({ omitPadding: true }) !== body) return null;
  return FINGERPRINT_PREFIX + body;
}

/** The DER bytes of every `CERTIFICATE` block in a PEM text, in order. */
export function pemCertificates(pem: string): Uint8Array[] {
  const blocks = pem.matchAll(
    /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+)-----END CERTIFICATE-----/g,
  );
  return [...blocks].map((m) => {
    try {
      return Uint8Array.fromBase64(m[1].replace(/\s+/g, ""));
    } catch {
      // Not base64 after all: no certificate, which whoever reads it will say.
      return new Uint8Array(0);
    }
  });
}

/** A PEM block of `label` (e.g. `CERTIFICATE`) holding `der`. */
export function toPem(label: string, der: Uint8Array): string {
  const lines = der.toBase64().match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

// ------------------------------------------------------------------------------ DER encoding

function length(n: number): number[] {
  if (n < 0x80) return [n];
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return [0x80 | bytes.length, ...bytes];
}

function tlv(tag: number, ...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const size = parts.reduce((sum, p) => sum + p.length, 0);
  const head = [tag, ...length(size)];
  const out = new Uint8Array(head.length + size);
  out.set(head);
  let at = head.length;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

const seq = (...parts: Uint8Array[]) => tlv(0x30, ...parts);
const set = (...parts: Uint8Array[]) => tlv(0x31, ...parts);
const octets = (bytes: Uint8Array) => tlv(0x04, bytes);
const utf8 = (text: string) => tlv(0x0c, new TextEncoder().encode(text));
const explicit = (n: number, inner: Uint8Array) => tlv(0xa0 + n, inner);

/** A non-negative INTEGER from big-endian magnitude bytes. */
function unsignedInteger(bytes: Uint8Array): Uint8Array {
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  const body = bytes.subarray(start);
  return body[0] & 0x80 ? tlv(0x02, new Uint8Array([0]), body) : tlv(0x02, body);
}

function oid(dotted: string): Uint8Array {
  const [a, b, ...rest] = dotted.split(".").map(Number);
  const out = [40 * a + b];
  for (const arc of rest) {
    const groups = [arc & 0x7f];
    for (let v = arc >>> 7; v > 0; v >>>= 7) groups.unshift(0x80 | (v & 0x7f));
    out.push(...groups);
  }
  return tlv(0x06, new Uint8Array(out));
}

function time(date: Date): Uint8Array {
  const iso = date.toISOString().replace(/[-:T]/g, "").slice(0, 14) + "Z"; // YYYYMMDDHHMMSSZ
  const year = date.getUTCFullYear();
  // RFC 5280: UTCTime through 2049, GeneralizedTime from 2050.
  const text = year < 2050 ? iso.slice(2) : iso;
  return tlv(year < 2050 ? 0x17 : 0x18, new TextEncoder().encode(text));
}

function extension(id: string, critical: boolean, value: Uint8Array): Uint8Array {
  const flag = critical ? [tlv(0x01, new Uint8Array([0xff]))] : [];
  return seq(oid(id), ...flag, octets(value));
}

/** ECDSA's IEEE P1363 signature (r || s), as WebCrypto makes it, in DER (a SEQUENCE of two). */
function derSignature(raw: Uint8Array): Uint8Array {
  const half = raw.length / 2;
  return seq(unsignedInteger(raw.subarray(0, half)), unsignedInteger(raw.subarray(half)));
}

function ipBytes(address: string): Uint8Array | null {
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(address)) {
    const parts = address.split(".").map(Number);
    return parts.every((p) => p < 256) ? new Uint8Array(parts) : null;
  }
  if (!address.includes(":")) return null;
  const [head, tail, extra] = address.replace(/%.*$/, "").split("::");
  if (extra !== undefined) return null;
  const groups = (s: string | undefined) => (s ? s.split(":") : []);
  const left = groups(head);
  const right = groups(tail);
  const missing = 8 - left.length - right.length;
  if (tail === undefined ? missing !== 0 : missing < 1) return null;
  const all = [...left, ...Array(missing).fill("0"), ...right];
  if (!all.every((g) => /^[0-9a-f]{1,4}$/i.test(g))) return null;
  const out = new Uint8Array(16);
  all.forEach((g, i) => {
    const v = parseInt(g, 16);
    out[2 * i] = v >> 8;
    out[2 * i + 1] = v & 0xff;
  });
  return out;
}

// ------------------------------------------------------------------------------ certificates

const OID_ECDSA_SHA256 = "1.2.840.10045.4.3.2";
const OID_COMMON_NAME = "2.5.4.3";
const OID_KEY_USAGE = "2.5.29.15";
const OID_SUBJECT_ALT_NAME = "2.5.29.17";
const OID_BASIC_CONSTRAINTS = "2.5.29.19";
const OID_EXT_KEY_USAGE = "2.5.29.37";
const OID_SERVER_AUTH = "1.3.6.1.5.5.7.3.1";

/** Options for {@link makeSelfSignedCertificate}. */
export interface SelfSignedOptions {
  /** Subject common name (shown by tools; clients check only the alternative names). */
  commonName: string;
  /** DNS names and IP addresses (v4 or v6) the certificate names, in order; duplicates dropped. */
  names: string[];
  /** Start of validity (default: one day ago, so a client whose clock is behind accepts it). */
  notBefore?: Date;
  /** End of validity (default: 9999-12-31, RFC 5280's "no well-defined expiration"). */
  notAfter?: Date;
}

/** A certificate and its private key, both PEM. */
export interface CertifiedKey {
  /** The certificate, PEM. */
  cert: string;
  /** The PKCS#8 private key, PEM. */
  key: string;
}

/**
 * Makes a new ECDSA P-256 key and a self-signed certificate for it that is not a CA
 * (basicConstraints CA:FALSE, keyUsage digitalSignature, extKeyUsage serverAuth), naming
 * `names` as subject alternative names: what rustls accepts as a server's own certificate, and
 * as its own trust anchor when a client pins it.
 *
 * @example
 * ```ts
 * const { cert, key } = await makeSelfSignedCertificate({
 *   commonName: "ferry-server",
 *   names: ["localhost", "127.0.0.1", "::1"],
 * });
 * Deno.listenTls({ port: 9021, cert, key });
 * ```
 */
export async function makeSelfSignedCertificate(options: SelfSignedOptions): Promise<CertifiedKey> {
  const keys = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
    "sign",
    "verify",
  ]);
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey));
  const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", keys.privateKey));
  const serial = crypto.getRandomValues(new Uint8Array(16));
  serial[0] = (serial[0] & 0x7f) | 0x40; // positive, and 16 bytes long
  const algorithm = seq(oid(OID_ECDSA_SHA256));
  const name = seq(set(seq(oid(OID_COMMON_NAME), utf8(options.commonName))));
  const seen = new Set<string>();
  const altNames: Uint8Array[] = [];
  for (const entry of options.names) {
    const ip = ipBytes(entry);
    const key = ip ? ip.join(".") : entry.toLowerCase();
    if (seen.has(key) || entry === "") continue;
    seen.add(key);
    altNames.push(ip ? tlv(0x87, ip) : tlv(0x82, new TextEncoder().encode(entry)));
  }
  const notBefore = options.notBefore ?? new Date(Date.now() - 86400_000);
  const notAfter = options.notAfter ?? new Date(Date.UTC(9999, 11, 31, 23, 59, 59));
  const tbs = seq(
    explicit(0, tlv(0x02, new Uint8Array([2]))),
    unsignedInteger(serial),
    algorithm,
    name,
    seq(time(notBefore), time(notAfter)),
    name,
    spki,
    explicit(
      3,
      seq(
        extension(OID_BASIC_CONSTRAINTS, true, seq()),
        extension(OID_KEY_USAGE, true, tlv(0x03, new Uint8Array([0x07, 0x80]))),
        extension(OID_EXT_KEY_USAGE, false, seq(oid(OID_SERVER_AUTH))),
        ...(altNames.length ? [extension(OID_SUBJECT_ALT_NAME, false, seq(...altNames))] : []),
      ),
    ),
  );
  const raw = new Uint8Array(
    await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, keys.privateKey, tbs),
  );
  const der = seq(tbs, algorithm, tlv(0x03, new Uint8Array([0]), derSignature(raw)));
  return { cert: toPem("CERTIFICATE", der), key: toPem("PRIVATE KEY", pkcs8) };
}
