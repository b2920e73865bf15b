/**
 * A big folder's HTTP listing a page at a time, against the real server made to page small
 * folders (`--http-page-size`): pages follow one another by cursor (`?after=`) with every entry
 * once, in any order the server sorts by (`?sort=name|size|mtime&order=asc|desc`), a cursor
 * stays right while files come and go, the search (`?q=`) covers the whole folder, `?json&page`
 * walks the same pages for scripts, bad cursors, sorts and queries are refused in one line,
 * names are escaped in every link, and a folder that fits one page is listed whole, in the
 * order asked for. The selection itself (bounded heaps against a full sort) is checked in
 * memory.
 *
 * @module
 */

import assert from "node:assert/strict";
import { ferry, runCommand, startHttp } from "./harness.ts";
import { BoundedHeap, PageSelector } from "../lib/folder_page.ts";
import {
  comparePlaces,
  type PageCursor,
  type PageSort,
  placeOrder,
  SORT_KEYS,
} from "../lib/page_order.ts";

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
  // Sorted by size or date, the pages hold the same entries too, the name not UTF-8 included.
  for (const sort of ["size", "mtime"] as const) {
    const walked = await walkPages(base, `/?json&sort=${sort}&order=desc`);
    assert.deepEqual(
      [...walked.names].sort(),
      whole.map((e: Entry) => e.name).sort(),
      `by ${sort}: every entry once`,
    );
    assert.equal(walked.pages.length, 4);
  }
  const search = await (await fetch(`${base}?json&q=.TXT`)).json();
  assert.deepEqual(search.entries.map((e: Entry) => e.name), ["a.txt", "c.txt"]);
  assert.equal(search.matching, 4);
  assert.equal(search.next, "/?q=.TXT&after=c.txt&json");
});

Deno.test("folder page: the bounded heaps pick what a full sort would", () => {
  const heap = new BoundedHeap<number>(3, (a, b) => a - b);
  for (const n of [9, 4, 7, 1, 8, 2, 6]) heap.offer(n);
  assert.deepEqual(heap.sorted(), [1, 2, 4]);
  assert.equal(heap.largest(), 4, "the top is the largest kept, as the sort's last");
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
    const sort: PageSort = {
      key: SORT_KEYS[Math.floor(random() * 3)],
      descending: random() < 0.5,
    };
    const keyed = sort.key !== "name";
    // Keys with many ties, so the name decides often.
    if (keyed) { for (const place of places) place.key = Math.floor(random() * 5); }
    const compare = placeOrder(sort);
    const sorted = [...places].sort(compare);
    const size = 1 + Math.floor(random() * 6);
    const after = random() < 0.3 ? undefined : {
      name: "abc"[Math.floor(random() * 3)] + Math.floor(random() * 30),
      dir: random() < 0.3,
      ...(keyed ? { key: Math.floor(random() * 5) } : {}),
    };
    const selector = new PageSelector({ size, after, sort });
    for (const place of places) selector.add(place);
    const { entries, previous, next, last } = selector.result();
    const start = after ? sorted.findIndex((p) => compare(p, after) > 0) : 0;
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

/** The entries of a page of `?json&page`, as a script reads them. */
interface JsonPage {
  entries: { name: string; type: string; size: number | null; mtime: string | null }[];
  total: number;
  matching: number;
  sort: string;
  order: string;
  first: string;
  previous: string | null;
  next: string | null;
  last: string | null;
}

/** Every page from `path` on, following `next` (at most 20), HTML or JSON. */
async function walkPages(
  base: string,
  path: string,
): Promise<{ names: string[]; pages: string[] }> {
  const names: string[] = [];
  const pages: string[] = [];
  let next: string | null = path;
  for (let hops = 0; next !== null && hops < 20; hops++) {
    pages.push(next);
    if (next.includes("json")) {
      const body: JsonPage = await (await fetch(new URL(next, base))).json();
      names.push(...body.entries.map((e) => e.name));
      next = body.next;
    } else {
      const html = await page(base, next);
      names.push(...rowsOf(html));
      next = linkOf(html, "next");
    }
  }
  return { names, pages };
}

/** Sets a file's or folder's modification time, in seconds since the epoch. */
async function touch(path: string, seconds: number): Promise<void> {
  await Deno.utime(path, seconds, seconds);
}

Deno.test("http pages: sorted by size or date on the server, either way, every entry once", async () => {
  const { server, base } = await startHttp(["--http-page-size", "3"]);
  await using _ = server;
  const root = server.root;
  // Sizes with ties (decided by name) and dates unlike the names' order.
  const files: [string, number, number][] = [
    ["a.txt", 30, 5000],
    ["b.txt", 10, 1000],
    ["c.txt", 20, 4000],
    ["d.txt", 10, 3000],
    ["e.txt", 50, 2000],
    ["f.txt", 20, 6000],
    ["g.txt", 0, 7000],
  ];
  for (const [name, size, time] of files) {
    await Deno.writeFile(`${root}/${name}`, new Uint8Array(size));
    await touch(`${root}/${name}`, time);
  }
  await Deno.mkdir(`${root}/old`);
  await Deno.mkdir(`${root}/new`);
  await touch(`${root}/old`, 100);
  await touch(`${root}/new`, 9000);
  // A symlink inside is listed with its target's size; one leading out is not listed.
  await Deno.symlink("e.txt", `${root}/link.txt`);
  await Deno.symlink("/etc/passwd", `${root}/out.txt`);
  const linkTime = (await Deno.stat(`${root}/e.txt`)).mtime!.getTime() / 1000;
  const all = [
    ...files.map(([name, size, time]) => ({ name, size, time, dir: false })),
    {
      name: "link.txt",
      size: 50,
      time: linkTime,
      dir: false,
    },
    { name: "old", size: 0, time: 100, dir: true },
    { name: "new", size: 0, time: 9000, dir: true },
  ];
  for (const key of SORT_KEYS) {
    for (const descending of [false, true]) {
      const compare = placeOrder({ key, descending });
      const expected = all.map((e) => ({
        name: e.name,
        dir: e.dir,
        key: key === "size" ? e.size : e.time * 1000,
      })).sort(compare).map((e) => e.name);
      const query = `sort=${key}${descending ? "&order=desc" : ""}`;
      const html = await walkPages(base, `/?${query}`);
      assert.deepEqual(html.names, expected, `${query}: the pages, in order, each entry once`);
      assert.equal(html.pages.length, 4, query);
      const json = await walkPages(base, `/?json&${query}`);
      assert.deepEqual(json.names, expected, `${query}: the same pages as JSON`);
    }
  }
  // The page says its order; the column titles lead to the sorted views, the sorted one's the
  // other way, and mark it.
  const newest = await page(base, "/?sort=mtime&order=desc");
  assert.match(newest, /Entries 1–3 of 10, by date, newest first, folders first, 3 a page\./);
  assert.match(
    newest,
    /<th class="d" aria-sort="descending" data-key="mtime"><a class="sort" href="\/\?sort=mtime">/,
  );
  assert.match(newest, /<th class="s" data-key="size"><a class="sort" href="\/\?sort=size">/);
  assert.match(newest, /<th data-key="name"><a class="sort" href="\/">/);
  assert.equal(linkOf(newest, "next"), "/?sort=mtime&order=desc&after=7000000%2Fg.txt");
  assert.match(await page(base, "/?sort=size"), /by size, smallest first/);
  assert.match(await page(base, "/?order=desc"), /by name, reversed/);
  // A script is told the order, and its links keep it.
  const body: JsonPage = await (await fetch(`${base}?json&sort=size&order=desc`)).json();
  assert.equal(body.sort, "size");
  assert.equal(body.order, "desc");
  assert.equal(body.first, "/?sort=size&order=desc&json");
  assert.equal(
    body.next,
    "/?sort=size&order=desc&after=50%2Flink.txt&json",
  );
  assert.deepEqual(body.entries.map((e) => e.name), ["old", "new", "link.txt"]);
  assert.equal(body.entries[2].size, 50);
});

Deno.test("http pages: a sorted page's cursor holds when files come and go", async () => {
  const { server, base } = await startHttp(["--http-page-size", "3"]);
  await using _ = server;
  const root = server.root;
  for (let i = 0; i < 8; i++) {
    await Deno.writeTextFile(`${root}/f${i}.txt`, "x".repeat(i));
    await touch(`${root}/f${i}.txt`, 1000 + i * 100);
  }
  // Newest first: f7, f6, f5 | f4, f3, f2 | f1, f0.
  const one = await page(base, "/?sort=mtime&order=desc");
  assert.deepEqual(rowsOf(one), ["f7.txt", "f6.txt", "f5.txt"]);
  const next = linkOf(one, "next")!;
  assert.equal(next, "/?sort=mtime&order=desc&after=1500000%2Ff5.txt");
  // A newer file, one changed to be the newest, one removed: all before the cursor's place.
  await Deno.writeTextFile(`${root}/new.txt`, "n");
  await touch(`${root}/f2.txt`, 5000);
  await Deno.remove(`${root}/f6.txt`);
  // The cursor's own file changes too: the page starts after the place it named.
  await touch(`${root}/f5.txt`, 100);
  const two = await page(base, next);
  assert.deepEqual(rowsOf(two), ["f4.txt", "f3.txt", "f1.txt"], "nothing skipped or repeated");
  assert.match(two, /Entries 4–6 of 8, by date, newest first/);
  // A file that grows past the cursor's size moves before it: by size, it is not seen again.
  const bySize = await page(base, "/?sort=size&after=3%2Ff3.txt");
  assert.deepEqual(rowsOf(bySize), ["f4.txt", "f5.txt", "f7.txt"]);
  await Deno.writeTextFile(`${root}/f7.txt`, "");
  assert.deepEqual(rowsOf(await page(base, "/?sort=size&after=3%2Ff3.txt")), ["f4.txt", "f5.txt"]);
});

Deno.test("http pages: a search in a sorted folder keeps the order, and the order keeps the search", async () => {
  const { server, base } = await startHttp(["--http-page-size", "2"]);
  await using _ = server;
  for (
    const [name, size] of [["report-a.pdf", 5], ["notes.txt", 9], ["Report-b.pdf", 7], [
      "report-c.pdf",
      1,
    ]] as const
  ) {
    await Deno.writeFile(`${server.root}/${name}`, new Uint8Array(size));
  }
  const html = await page(base, "/?q=report&sort=size&order=desc");
  assert.deepEqual(rowsOf(html), ["Report-b.pdf", "report-a.pdf"]);
  assert.match(
    html,
    /Entries 1–2 of 3 whose name holds “report” \(of 4 in this folder\), by size, largest first/,
  );
  assert.equal(linkOf(html, "next"), "/?q=report&sort=size&order=desc&after=5%2Freport-a.pdf");
  assert.deepEqual(rowsOf(await page(base, linkOf(html, "next")!)), ["report-c.pdf"]);
  // The column titles keep the search; the search form keeps the order.
  assert.match(html, /<th data-key="name"><a class="sort" href="\/\?q=report">/);
  assert.match(
    html,
    /<input type="hidden" name="sort" value="size"><input type="hidden" name="order" value="desc">/,
  );
  // "Show the whole folder" keeps the order.
  assert.match(html, /<a href="\/\?sort=size&#38;order=desc">Show the whole folder/);
});

Deno.test("http pages: a folder that fits one page is listed whole in the order asked for", async () => {
  const { server, base } = await startHttp(["--http-page-size", "5"]);
  await using _ = server;
  await Deno.writeFile(`${server.root}/small.txt`, new Uint8Array(1));
  await Deno.writeFile(`${server.root}/big.txt`, new Uint8Array(100));
  await Deno.writeFile(`${server.root}/mid.txt`, new Uint8Array(10));
  await Deno.mkdir(`${server.root}/sub`);
  const response = await fetch(`${base}?sort=size&order=desc`, {
    headers: { accept: "text/html" },
  });
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-length"), null, "sent as it is written");
  const html = await response.text();
  assert.deepEqual(rowsOf(html), ["sub", "big.txt", "mid.txt", "small.txt"]);
  assert.doesNotMatch(html, /data-paged|id="pageinfo"/, "whole, not a page");
  assert.match(html, /data-sort="size" data-order="desc"/, "the script starts from this order");
  assert.match(
    html,
    /<th class="s" aria-sort="descending" data-key="size"><a class="sort" href="\/\?sort=size">/,
  );
  assert.deepEqual(
    rowsOf(await page(base, "/")),
    ["sub", "big.txt", "mid.txt", "small.txt"].sort(
      (a, b) => comparePlaces({ name: a, dir: a === "sub" }, { name: b, dir: b === "sub" }),
    ),
  );
  // HEAD answers the headers alone, and refuses a bad sort as GET does.
  const head = await fetch(`${base}?sort=size`, { method: "HEAD" });
  assert.equal(head.status, 200);
  assert.equal((await fetch(`${base}?sort=big`, { method: "HEAD" })).status, 400);
});

Deno.test("http pages: bad sorts and sorted cursors are refused in one line", async () => {
  const { server, base } = await startHttp(["--http-page-size", "3"]);
  await using _ = server;
  await Deno.writeTextFile(`${server.root}/a.txt`, "a");
  const refused = [
    ["?sort=date", `Refused ?sort: "date" is not one of name, size, mtime`],
    ["?sort=", `Refused ?sort: "" is not one of name, size, mtime`],
    ["?sort=SIZE", `Refused ?sort: "SIZE" is not one of name, size, mtime`],
    [
      `?sort=${"x".repeat(5000)}`,
      `Refused ?sort: "${"x".repeat(40)}" is not one of name, size, mtime`,
    ],
    ["?order=down", `Refused ?order: "down" is not asc or desc`],
    ["?sort=%E2%80%AEezis", "Refused ?sort: it is not one of name, size, mtime"],
    ["?order=%0Adesc", "Refused ?order: it is not asc or desc"],
    ["?sort=size&order=", `Refused ?order: "" is not asc or desc`],
    [
      "?sort=size&after=a.txt",
      "Refused ?after: in a sort by size it is SIZE/NAME, a whole number then a name",
    ],
    [
      "?sort=mtime&after=x%2Fa.txt",
      "Refused ?after: in a sort by mtime it is MTIME/NAME, a whole number then a name",
    ],
    [
      "?sort=size&after=1.5%2Fa.txt",
      "Refused ?after: in a sort by size it is SIZE/NAME, a whole number then a name",
    ],
    [
      "?sort=size&after=12345678901234567%2Fa.txt",
      "Refused ?after: in a sort by size it is SIZE/NAME, a whole number then a name",
    ],
    ["?sort=size&after=9999999999999999%2Fa.txt", "Refused ?after: its size is out of range"],
    ["?sort=size&after=1%2F..", `Refused ?after: ".." is not a name in a folder`],
    ["?sort=size&after=1%2F", "Refused ?after: it names no entry"],
    ["?sort=mtime&after=1%2Fa%2Fb", "Refused ?after: a name in this folder has no slash inside"],
    ["?after=1%2Fa.txt", "Refused ?after: a name in this folder has no slash inside"],
  ];
  for (const [query, message] of refused) {
    const response = await fetch(`${base}${query}`);
    assert.equal(response.status, 400, query);
    assert.equal(await response.text(), message + "\n", query);
  }
  const json = await fetch(`${base}?json&sort=nope`);
  assert.equal(json.status, 400);
  assert.deepEqual(await json.json(), {
    error: `Refused ?sort: "nope" is not one of name, size, mtime`,
    status: 400,
  });
  // A sorted cursor that names nothing there is only a place, before or after the others.
  assert.deepEqual(rowsOf(await page(base, "/?sort=mtime&after=-5%2Fzzz")), ["a.txt"]);
  assert.deepEqual(rowsOf(await page(base, "/?sort=size&after=0%2Fa.txt%2F")), ["a.txt"]);
  // The server is still up and answering.
  assert.equal((await fetch(`${base}?sort=size`)).status, 200);
});
