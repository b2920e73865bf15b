/**
 * What the documentation claims that a reader can check: every relative link in README.md and
 * docs/, and every path that climbs out of a page's folder, leads to a file of the repository (a
 * clone has nothing outside it), and the defaults the docs give for the server's limits and
 * budgets are the server's own.
 *
 * @module
 */

import assert from "node:assert/strict";
import { dirname, join, normalize } from "node:path";
import { KEPT_DEFAULTS } from "../lib/kept_uploads.ts";
import { SERVER_DEFAULTS } from "../lib/server.ts";
import { REPO_ROOT } from "./harness.ts";

/** README.md and every page in docs/, relative to the repository. */
async function docPages(): Promise<string[]> {
  const pages = ["README.md"];
  for await (const entry of Deno.readDir(`${REPO_ROOT}docs`)) {
    if (entry.isFile && entry.name.endsWith(".md")) pages.push(`docs/${entry.name}`);
  }
  return pages.sort();
}

Deno.test("every relative link or ../ path in README.md and docs/ names a file in the repository", async () => {
  const broken: string[] = [];
  for (const page of await docPages()) {
    const text = await Deno.readTextFile(`${REPO_ROOT}${page}`);
    // Markdown links, and paths that climb out of the page's folder written as code.
    const links = [...text.matchAll(/\]\(([^)\s]+)\)/g), ...text.matchAll(/`(\.\.\/[^`\s]*)`/g)];
    for (const [, target] of links) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith("#")) continue;
      const path = normalize(join(dirname(page), target.split("#")[0]));
      const inside = !path.startsWith("..");
      const exists = inside && await Deno.stat(`${REPO_ROOT}${path}`).then(() => true, () => false);
      if (!exists) broken.push(`${page}: ${target}`);
    }
  }
  assert.deepEqual(broken, [], "links that lead nowhere in a clone");
});

/** The server's limit options, in the order of {@link SERVER_DEFAULTS}. */
const LIMIT_OPTIONS = [
  "--max-connections",
  "--max-per-address",
  "--idle-timeout",
  "--handshake-timeout",
  "--min-rate",
];

Deno.test("the docs give the defaults of the limits and budgets that the server has", async () => {
  const doc = (path: string) => Deno.readTextFile(new URL(`../${path}`, import.meta.url));
  /** The default column of an option's row in a markdown table. */
  const tableDefault = (text: string, option: string) =>
    new RegExp(`^\\s*\\| \`${option}[^|]*\\| *([^|]*?) *\\|`, "m").exec(text)?.[1];
  const { maxConnections, maxPerAddress, idleTimeoutMs, handshakeTimeoutMs, minRate } =
    SERVER_DEFAULTS;
  const server = await doc("docs/server.md");
  assert.deepEqual(
    LIMIT_OPTIONS.map((option) => tableDefault(server, option)),
    [maxConnections, maxPerAddress, idleTimeoutMs / 1000, handshakeTimeoutMs / 1000, minRate]
      .map(String),
    "docs/server.md's option table",
  );
  assert.equal(tableDefault(server, "--keep-budget"), `${KEPT_DEFAULTS.budget / 2 ** 30} GiB`);
  assert.equal(tableDefault(server, "--keep-for"), `${KEPT_DEFAULTS.maxAgeMs / 3600_000} h`);
  const security = await doc("docs/security.md");
  assert.deepEqual(
    LIMIT_OPTIONS.map((option) => tableDefault(security, option)),
    [
      `${maxConnections}`,
      `${maxPerAddress}`,
      `${idleTimeoutMs / 1000} s`,
      `${handshakeTimeoutMs / 1000} s`,
      `${minRate} B/s`,
    ],
    "docs/security.md's table of limits",
  );
  // The library's options are the same, in milliseconds.
  const library = (await doc("docs/library.md")).replace(/\s+/g, " ");
  for (const [option, value] of Object.entries(SERVER_DEFAULTS)) {
    const said = new RegExp(`\`${option}\` \\([^)]*default ${value}[;)]`);
    assert.match(library, said, `docs/library.md on ${option}`);
  }
});
