/**
 * A big folder's HTTP listing a page at a time, against the real server made to page small
 * folders (`--http-page-size`): pages follow one another by cursor (`?after=`) with every entry
 * once, a cursor stays right while files come and go, the search (`?q=`) covers the whole
 * folder, `?json&page` walks the same pages for scripts, bad cursors and queries are refused in
 * one line, names are escaped in every link, and a folder that fits one page is listed as
 * before. The selection itself (bounded heaps against a full sort) is checked in memory.
 *
 * @module
 */

import assert from "node:assert/strict";
import { ferry, runCommand, startHttp } from "./harness.ts";
import { BoundedHeap, comparePlaces, type PageCursor, PageSelector } from "../lib/folder_page.ts";

const decoder = new TextDecoder();

/** The rows' names of a listing page, in order. */
function rowsOf(html: string): string[] {
  return [...html.matchAll(/<tr data-name="([^"]*)"/g)].map((m) => m[1]);
}

/** The href of the page link `rel` (first, prev, next, last), unescaped; null when greyed. */
function linkOf(html: string, rel: string): string | null {
  const href = new RegExp(`<a rel="${rel}" href="([^"]*)"`).exec(html)?.[1];
  return href === undefined ? null : href.replace(/&#(\d+);/g, (_, n) => String.fromCharCode(n));
}

async function page(base: string, path: string): Promise<string> {
  const response = await fetch(new URL(path, base), { headers: { accept: "text/html" } });
  assert.equal(response.status, 200, `${path}: ${response.status}`);
  return await response.text();
}

/** Makes files (and folders, for names ending in /) under `root`. */
async function make(root: string, names: string[]): Promise<void> {
  for (const name of names) {
    if (name.endsWith("/")) await Deno.mkdir(`${root}/${name}`, { recursive: true });
    else await Deno.writeTextFile(`${root}/${name}`, name);
  }
}

Deno.test("http pages: next and previous walk a big folder by cursor, every entry once", async () => {
  const { server, base } = await startHttp(["--http-page-size", "3"]);
  await using _ = server;
  await make(server.root, ["zeta/", "alpha/", "b.txt", "a.txt", "d.txt", "c.txt", "e.txt"]);
  await Deno.symlink("a.txt", `${server.root}/link.txt`);
  await Deno.symlink("/etc/passwd", `${server.root}/out.txt`);
  await Deno.symlink("alpha", `${server.root}/folderlink`);
  const order = ["alpha", "zeta", "a.txt", "b.txt", "c.txt", "d.txt", "e.txt", "link.txt"];

  let html = await page(base, "/");
  assert.deepEqual(rowsOf(html), order.slice(0, 3), "folders first, then by name");
  assert.match(html, /data-paged="1"/);
  assert.match(html, /Entries 1–3 of 8, by name, folders first, 3 a page/);
  assert.equal(linkOf(html, "prev"), null, "no page before the first");
  assert.equal(linkOf(html, "next"), "/?after=a.txt");
  const seen: string[] = [];
  const starts: string[] = [];
  let path: string | null = "/";
  for (let hops = 0; path !== null && hops < 10; hops++) {
    html = await page(base, path);
    starts.push(/Entries ([\d,]+)–/.exec(html)![1]);
    seen.push(...rowsOf(html));
    path = linkOf(html, "next");
  }
  assert.deepEqual(seen, order, "every entry once, in order, none leading out");
  assert.deepEqual(starts, ["1", "4", "7"]);
  // The last page's previous link leads back one page.
  assert.equal(linkOf(html, "prev"), "/?after=a.txt");
  assert.deepEqual(rowsOf(await page(base, linkOf(html, "prev")!)), order.slice(3, 6));
  // A folder's cursor ends with a slash: after the folder alpha, not a file of that name.
  const afterFolder = await page(base, "/?after=alpha%2F");
  assert.deepEqual(rowsOf(afterFolder), order.slice(1, 4));
  assert.equal(linkOf(afterFolder, "prev"), "/");
  // As a file, "alpha" sorts after a.txt ("." before "l").
  assert.deepEqual(rowsOf(await page(base, "/?after=alpha")), order.slice(3, 6));
  // "Last" shows the last full page.
  const first = await page(base, "/");
  const last = await page(base, linkOf(first, "last")!);
  assert.deepEqual(rowsOf(last), order.slice(-3));
  assert.match(last, /Entries 6–8 of 8/);
  assert.equal(linkOf(last, "next"), null);
  // The page has its rows and nothing of the private folders, and its answer is logged.
  assert.ok(!html.includes(".ferry"), "a private folder listed");
  await server.waitForLog(/http GET "\/" 200 \d+ bytes ok \(page: \d+ of 8 entries\)/);
});

Deno.test("http pages: a cursor stays right when files come and go between two pages", async () => {
  const { server, base } = await startHttp(["--http-page-size", "3"]);
  await using _ = server;
  await make(server.root, ["b.txt", "d.txt", "f.txt", "h.txt", "j.txt", "l.txt", "n.txt"]);
  const one = await page(base, "/");
  assert.deepEqual(rowsOf(one), ["b.txt", "d.txt", "f.txt"]);
  const next = linkOf(one, "next")!;
  // Before the cursor: a new file and a removed one shift an offset, never a cursor.
  await make(server.root, ["a.txt", "c.txt", "g.txt"]);
  await Deno.remove(`${server.root}/d.txt`);
  const two = await page(base, next);
  assert.deepEqual(rowsOf(two), ["g.txt", "h.txt", "j.txt"], "the new g.txt, nothing skipped");
  assert.match(two, /Entries 5–7 of 9/);
  // The file the cursor names may go too: the page still starts after its place.
  await Deno.remove(`${server.root}/f.txt`);
  assert.deepEqual(rowsOf(await page(base, next)), ["g.txt", "h.txt", "j.txt"]);
  // A bookmarked cursor past the end shows no rows, and links back.
  const end = await page(base, "/?after=zzz");
  assert.deepEqual(rowsOf(end), []);
  assert.match(end, /None of the 8 entries comes after this place/);
  assert.match(end, /id="empty">Nothing after this place/);
  assert.equal(linkOf(end, "prev"), "/?after=h.txt");
});

Deno.test("http pages: the search covers the whole folder, before paging", async () => {
  const { server, base } = await startHttp(["--http-page-size", "2"]);
  await using _ = server;
  await make(server.root, [
    "Report-2019.pdf",
    "notes.txt",
    "report-2020.pdf",
    "zz/",
    "zz/report-inside.pdf",
    "y-report.txt",
    "x.txt",
  ]);
  let html = await page(base, "/?q=REPORT");
  assert.deepEqual(rowsOf(html), ["Report-2019.pdf", "report-2020.pdf"], "case-insensitive");
  assert.match(html, /Entries 1–2 of 3 whose name holds “REPORT” \(of 6 in this folder\)/);
  assert.match(html, /<input id="q" name="q" type="search" value="REPORT"/);
  assert.equal(linkOf(html, "next"), "/?q=REPORT&after=report-2020.pdf");
  html = await page(base, linkOf(html, "next")!);
  assert.deepEqual(rowsOf(html), ["y-report.txt"], "names of one folder, not below it");
  assert.match(html, /Show the whole folder/);
  html = await page(base, "/?q=nothing+like+it");
  assert.deepEqual(rowsOf(html), []);
  assert.match(html, /No name among the 6 entries of this folder holds “nothing like it”/);
  // A search of a small folder is answered by the server too (a bookmarked search).
  const small = await page(base, "/zz/?q=inside");
  assert.deepEqual(rowsOf(small), ["report-inside.pdf"]);
});

Deno.test("http pages: a folder that fits one page is listed whole, as before", async () => {
  const { server, base } = await startHttp(["--http-page-size", "3"]);
  await using _ = server;
  await make(server.root, ["b.txt", "a/", "c.txt"]);
  const html = await page(base, "/");
  assert.deepEqual(rowsOf(html), ["a", "b.txt", "c.txt"]);
  assert.doesNotMatch(html, /data-paged|id="pageinfo"|nav class="pages"|id="search"/);
  assert.match(html, /<input id="filter"/, "filtered in the browser");
});

Deno.test("http pages: bad cursors and queries are refused in one line, before any read", async () => {
  const { server, base } = await startHttp(["--http-page-size", "3"]);
  await using _ = server;
  const refused = [
    ["?after=", "Refused ?after: it names no entry"],
    ["?after=..", `Refused ?after: ".." is not a name in a folder`],
    ["?after=.%2F", `Refused ?after: "." is not a name in a folder`],
    ["?after=a%2Fb", "Refused ?after: a name in this folder has no slash inside"],
    ["?after=..%2F..%2Fetc%2Fpasswd", "Refused ?after: a name in this folder has no slash inside"],
    ["?after=a%00b", "Refused ?after: it contains a NUL byte"],
    [`?after=${"x".repeat(1025)}`, "Refused ?after: it is longer than 1024 bytes"],
    ["?q=a%01", "Refused ?q: it contains a control character"],
    ["?q=a%C2%85", "Refused ?q: it contains a control character"],
    ["?q=%E2%80%AEtxt.exe", "Refused ?q: it contains a bidirectional control character"],
    [`?q=${"x".repeat(257)}`, "Refused ?q: it is longer than 256 characters"],
  ];
  for (const [query, message] of refused) {
    const response = await fetch(`${base}${query}`);
    assert.equal(response.status, 400, query);
    assert.equal(await response.text(), message + "\n", query);
  }
  const json = await fetch(`${base}?json&after=..`);
  assert.equal(json.status, 400);
  assert.deepEqual(await json.json(), {
    error: `Refused ?after: ".." is not a name in a folder`,
    status: 400,
  });
  const recursive = await fetch(`${base}?json&page&recursive`);
  assert.equal(recursive.status, 400);
  await recursive.body?.cancel();
  const head = await fetch(`${base}?after=..`, { method: "HEAD" });
  assert.equal(head.status, 400);
  // A cursor naming something that is not there is only a place: no 404.
  assert.equal((await fetch(`${base}?after=no-such-file`)).status, 200);
});

Deno.test("http pages: names are escaped in rows, links and the search box", async () => {
  const { server, base } = await startHttp(["--http-page-size", "1"]);
  await using _ = server;
  const hostile = `<img src=x onerror=alert(1)>&"'.txt`;
  await make(server.root, [hostile, "z.txt"]);
  const html = await page(base, "/");
  assert.ok(!html.includes("<img"), "a name became markup");
  const next = linkOf(html, "next")!;
  assert.equal(new URL(next, base).searchParams.get("after"), hostile);
  assert.deepEqual(rowsOf(await page(base, next)), ["z.txt"]);
  const search = await page(base, `/?q=${encodeURIComponent(`"><script>x</script>`)}`);
  assert.ok(!search.includes("<script>x"), "the query became markup");
  assert.match(search, /value="&#34;&#62;&#60;script&#62;x&#60;\/script&#62;"/);
});

Deno.test("http pages: ?json&page walks the pages for a script; ?json stays whole", async () => {
  const { server, base } = await startHttp(["--http-page-size", "2"]);
  await using _ = server;
  await make(server.root, ["d/", "b/", "c.txt", "a.txt", "e.txt"]);
  await Deno.symlink("c.txt", `${server.root}/f.txt`);
  await Deno.mkdir(`${server.root}/d/inner`);
  const made = await runCommand("sh", ["-c", 'printf x > "$(printf "bad\\377name")"'], {
    cwd: server.root,
  });
  assert.equal(made.code, 0, made.stderr);
  // ?json is still the whole folder, as `ferry list --json` prints it.
  const whole = await (await fetch(`${base}?json`)).json();
  assert.deepEqual(
    whole,
    JSON.parse(decoder.decode((await ferry(server, ["list", "--json"])).stdout)),
  );
  assert.equal(whole.length, 7);
  // The pages hold the same entries, folders first, each once.
  type Entry = { name: string; type: string };
  const entries: Entry[] = [];
  let next: string | null = "/?json&page";
  let pages = 0;
  for (; next !== null && pages < 10; pages++) {
    const body: {
      entries: Entry[];
      total: number;
      matching: number;
      pageSize: number;
      next: string | null;
      first: string;
    } = await (await fetch(new URL(next, base))).json();
    assert.equal(body.total, 7);
    assert.equal(body.pageSize, 2);
    assert.equal(body.first, "/?json");
    entries.push(...body.entries);
    next = body.next;
  }
  assert.equal(pages, 4);
  const foldersFirst = [...whole].sort((a: Entry, b: Entry) =>
    comparePlaces({ name: a.name, dir: a.type === "dir" }, { name: b.name, dir: b.type === "dir" })
  );
  assert.deepEqual(entries, foldersFirst);
  const search = await (await fetch(`${base}?json&q=.TXT`)).json();
  assert.deepEqual(search.entries.map((e: Entry) => e.name), ["a.txt", "c.txt"]);
  assert.equal(search.matching, 4);
  assert.equal(search.next, "/?q=.TXT&after=c.txt&json");
});

Deno.test("folder page: the bounded heaps pick what a full sort would", () => {
  const heap = new BoundedHeap<number>(3, (a, b) => a - b);
  for (const n of [9, 4, 7, 1, 8, 2, 6]) heap.offer(n);
  assert.deepEqual(heap.sorted(), [1, 2, 4]);
  // Random folders, cursors and sizes against the whole folder sorted.
  let seed = 7;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  for (let round = 0; round < 200; round++) {
    const places: PageCursor[] = [];
    const count = Math.floor(random() * 40);
    const taken = new Set<string>();
    for (let i = 0; i < count; i++) {
      const name = "abcAB._é"[Math.floor(random() * 8)] + Math.floor(random() * 30);
      const dir = random() < 0.3;
      if (taken.has(name + dir)) continue;
      taken.add(name + dir);
      places.push({ name, dir });
    }
    const sorted = [...places].sort(comparePlaces);
    const size = 1 + Math.floor(random() * 6);
    const after = random() < 0.3
      ? undefined
      : { name: "abc"[Math.floor(random() * 3)] + Math.floor(random() * 30), dir: random() < 0.3 };
    const selector = new PageSelector({ size, after });
    for (const place of places) selector.add(place);
    const { entries, previous, next, last } = selector.result();
    const start = after ? sorted.findIndex((p) => comparePlaces(p, after) > 0) : 0;
    const from = start < 0 ? sorted.length : start;
    assert.deepEqual(entries, sorted.slice(from, from + size));
    assert.equal(selector.before, from);
    assert.deepEqual(
      next,
      from + size < sorted.length ? sorted[from + size - 1] : undefined,
    );
    assert.deepEqual(
      previous,
      from === 0 ? undefined : from <= size ? null : sorted[from - size - 1],
    );
    assert.deepEqual(last, sorted.length <= size ? null : sorted[sorted.length - size - 1]);
  }
});
