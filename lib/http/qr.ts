/**
 * The QR code of the page's address that `--http-qr` prints at start, for a phone to scan: which
 * address a phone can use (a wildcard listener is reached by one of this machine's network
 * addresses, never by 0.0.0.0), and the code drawn in a terminal with half-block characters, two
 * modules a character. The code itself is made by the npm package qrcode-generator.
 *
 * @module
 */

import qrcode from "qrcode-generator";

/** Modules of light margin around the code: the quiet zone the QR standard asks for. */
const QUIET = 4;

/** Options for {@link qrLines}. */
export interface QrLinesOptions {
  /**
   * Paint dark modules black on white with ANSI colours, right on any terminal (default true).
   * Without, light modules are drawn as blocks: right on a dark terminal, inverted on a light one.
   */
  color?: boolean;
}

/**
 * The QR code of `text` as lines for a terminal, margin included.
 *
 * @example
 * ```ts
 * for (const line of qrLines("http://192.168.1.20:8080/")) console.error(line);
 * ```
 */
export function qrLines(text: string, options: QrLinesOptions = {}): string[] {
  const color = options.color ?? true;
  const code = qrcode(0, "M");
  code.addData(text, "Byte");
  code.make();
  const count = code.getModuleCount();
  const size = count + 2 * QUIET;
  const dark = (row: number, col: number) => {
    const r = row - QUIET, c = col - QUIET;
    return r >= 0 && c >= 0 && r < count && c < count && code.isDark(r, c);
  };
  const lines: string[] = [];
  for (let row = 0; row < size; row += 2) {
    let line = "";
    for (let col = 0; col < size; col++) {
      // What is drawn: dark modules in colour, light ones without (drawn in the terminal's text
      // colour, light on a dark screen).
      const top = dark(row, col) === color;
      const bottom = row + 1 < size ? dark(row + 1, col) === color : !color;
      line += top ? (bottom ? "█" : "▀") : (bottom ? "▄" : " ");
    }
    lines.push(color ? `\x1b[30;47m${line}\x1b[0m` : line);
  }
  return lines;
}

function isWildcard(hostname: string): boolean {
  return hostname === "0.0.0.0" || hostname === "::" || hostname === "[::]";
}

/**
 * The address a phone would open for a listener at `url`: the URL itself, or for a wildcard
 * listener the same URL at this machine's first network address (IPv4, not loopback or
 * link-local). Null when a wildcard's addresses cannot be listed (no `--allow-sys`) or there is
 * none.
 */
export function phoneUrl(url: string): string | null {
  const parsed = new URL(url);
  if (!isWildcard(parsed.hostname)) return url;
  if (Deno.permissions.querySync({ name: "sys", kind: "networkInterfaces" }).state !== "granted") {
    return null;
  }
  const nic = Deno.networkInterfaces().find((nic) =>
    nic.family === "IPv4" && !nic.address.startsWith("127.") &&
    !nic.address.startsWith("169.254.")
  );
  if (!nic) return null;
  parsed.hostname = nic.address;
  return parsed.href;
}
