/**
 * The HTTP side's page in a real headless Chromium (Debian's `chromium`, driven by
 * playwright-core): the listing, names shown as text, filter and sort, an upload through the page
 * with its result, a download compared byte for byte, rename, delete and new folder (with the
 * mouse and from the keyboard), sign-in with the token, and a phone-sized screen. Skipped, with a note, where /usr/bin/chromium is missing (.ci/run installs it).
 *
 * `FERRY_SCREENSHOT=1` also writes docs/http-page.png, the README's picture of the page.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import fs from "node:fs";
import type { BrowserContext, Page } from "playwright-core";
import {
  makeTempDir,
  makeTempFile,
  randomBytes,
  REPO_ROOT,
  startHttp,
  waitFor,
} from "./harness.ts";
import { SORT_MAX } from "../lib/http/page_script.ts";

// playwright-core probes /proc/sys/fs/binfmt_misc/WSLInterop as it loads, and Deno refuses to
// look under /proc without --allow-all (NotCapable, where Node would say "no such file"); the
// test suite runs with named permissions, so such a probe answers "absent" instead.
const existsSync = fs.existsSync;
fs.existsSync = (path: fs.PathLike) => {
  try {
    return existsSync(path);
  } catch {
    return false;
  }
};

const CHROMIUM = "/usr/bin/chromium";
/** Why the browser tests cannot run here, if they cannot. */
const SKIP = !await Deno.stat(CHROMIUM).then(() => true, () => false)
  ? `${CHROMIUM} is missing (apt-get install chromium)`
  // playwright-core asks for the home folder as it loads: `deno task test` grants --allow-sys.
  : (await Deno.permissions.query({ name: "sys" })).state !== "granted"
  ? "playwright-core needs --allow-sys (deno task test grants it)"
  : null;
if (SKIP) console.log(`http_browser_test: skipped: ${SKIP}`);
const HAS_CHROMIUM = SKIP === null;
const { chromium } = HAS_CHROMIUM
  ? await import("playwright-core")
  : { chromium: null as unknown as typeof import("playwright-core").chromium };

/** What every browser test needs: Chromium, and no sanitizers over playwright-core's own ops. */
const BROWSER_TEST = { ignore: !HAS_CHROMIUM, sanitizeResources: false, sanitizeOps: false };

/**
 * A new page at `url` that dismisses and counts every native dialog and collects every script
 * error: a name run as script, or a bug of the page, shows in `seen`.
 */
async function openWatched(
  browser: BrowserContext,
  url: string,
): Promise<{ page: Page; seen: { dialogs: number; errors: string[] } }> {
  const page = await browser.newPage();
  const seen = { dialogs: 0, errors: [] as string[] };
  page.on("dialog", (dialog) => {
    seen.dialogs++;
    dialog.dismiss();
  });
  page.on("pageerror", (error) => seen.errors.push(String(error)));
  await page.goto(url);
  return { page, seen };
}

/** A fresh headless Chromium with its own profile, closed and removed on dispose. */
async function launch(
  options: { javaScriptEnabled?: boolean } = {},
): Promise<BrowserContext & AsyncDisposable> {
  const profile = await makeTempDir({ prefix: "ferry_chromium_" });
  const context = await chromium.launchPersistentContext(profile.path, {
    executablePath: CHROMIUM,
    javaScriptEnabled: options.javaScriptEnabled ?? true,
    acceptDownloads: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  return Object.assign(context, {
    async [Symbol.asyncDispose]() {
      await context.close();
      await profile[Symbol.asyncDispose]();
    },
  });
}

Deno.test({
  name: "http page: listing, filter, sort, upload and download in Chromium",
  ...BROWSER_TEST,
  async fn() {
    const { server, base } = await startHttp();
    await using _ = server;
    await Deno.mkdir(`${server.root}/photos`);
    await Deno.writeFile(`${server.root}/photos/beach.jpg`, randomBytes(150_000));
    await Deno.writeFile(`${server.root}/report.pdf`, randomBytes(420_000));
    await Deno.writeFile(`${server.root}/notes.txt`, randomBytes(1200));
    const hostile = `<img src=x onerror=alert(1)>.txt`;
    await Deno.writeFile(`${server.root}/${hostile}`, randomBytes(10));

    await using browser = await launch();
    const { page, seen } = await openWatched(browser, base);

    const names = async () =>
      await page.$$eval(
        "table.listing tbody tr[data-name]:not([hidden])",
        (rows) => rows.map((r) => r.getAttribute("data-name")),
      );
    assert.deepEqual(await names(), ["photos", hostile, "notes.txt", "report.pdf"]);
    assert.equal(
      await page.locator("td.n a", { hasText: hostile }).count(),
      1,
      "name shown as text",
    );
    assert.equal(await page.locator("img").count(), 0, "a name became markup");

    await page.fill("#filter", "RE");
    assert.deepEqual(await names(), ["report.pdf"]);
    await page.fill("#filter", "");
    await page.click("th[data-key=size] button");
    assert.deepEqual(await names(), ["photos", hostile, "notes.txt", "report.pdf"]);
    await page.click("th[data-key=size] button");
    assert.deepEqual(await names(), ["photos", "report.pdf", "notes.txt", hostile]);
    // The column and direction of the sort are shown, not only told to screen readers.
    const marks = await page.evaluate<string[]>(
      `[...document.querySelectorAll("th[data-key] button.sort")]
        .map((b) => getComputedStyle(b, "::after").content)`,
    );
    assert.deepEqual(marks, ["none", '" ▼"', "none"]);
    // The address follows the sort, and the server shows the same order at a reload.
    assert.equal(new URL(page.url()).search, "?sort=size&order=desc");
    await page.reload();
    assert.deepEqual(await names(), ["photos", "report.pdf", "notes.txt", hostile]);
    assert.equal(await page.getAttribute("th[data-key=size]", "aria-sort"), "descending");
    await page.click("th[data-key=name] button");
    assert.deepEqual(await names(), ["photos", hostile, "notes.txt", "report.pdf"]);
    assert.equal(new URL(page.url()).search, "");

    // Upload through the page's file input.
    const bytes = randomBytes(300_000);
    await page.setInputFiles("#pick", [
      {
        name: "from-browser.bin",
        mimeType: "application/octet-stream",
        buffer: Buffer.from(bytes),
      },
    ]);
    await page.waitForSelector("#results li.ok", { timeout: 15000 });
    assert.deepEqual(await Deno.readFile(`${server.root}/from-browser.bin`), bytes);
    await page.waitForSelector('tr[data-name="from-browser.bin"]', { timeout: 15000 });

    // A second upload of the same name is refused, and the page says so.
    await page.setInputFiles("#pick", [
      {
        name: "from-browser.bin",
        mimeType: "application/octet-stream",
        buffer: Buffer.from(randomBytes(5)),
      },
    ]);
    await page.waitForSelector("#results li.fail", { timeout: 15000 });
    assert.match(await page.textContent("#results li.fail .state") ?? "", /File exists/);
    assert.deepEqual(await Deno.readFile(`${server.root}/from-browser.bin`), bytes);

    // Every stop of the Tab key is something the visitor can see: the pickers' file inputs are
    // invisible, and their labels are the stops; each row's actions follow its link.
    await page.focus("#filter");
    const stops: string[] = [];
    for (let i = 0; i < 10; i++) {
      await page.keyboard.press("Tab");
      stops.push(
        await page.evaluate<string>(
          "(e => e.id || e.textContent.trim())(document.activeElement)",
        ),
      );
    }
    assert.deepEqual(stops, [
      "newfolder",
      "choose files",
      "a folder",
      "overwrite",
      "Name",
      "Size",
      "Modified (UTC)",
      "photos/",
      "Rename",
      "Delete",
    ]);

    // From the keyboard: Tab to "choose files", Enter opens the picker.
    // (Listening first: Playwright asks Chromium to hand it file choosers only once it listens,
    // and the focus after it is a round trip that makes sure the request has gone.)
    const choosing = page.waitForEvent("filechooser");
    await page.focus('label[for="pick"]');
    await page.keyboard.press("Enter");
    const chooser = await choosing;
    assert.ok(chooser.isMultiple(), "the picker takes several files");
    await chooser.setFiles([]);

    // A whole folder, picked with the folder input, keeps its relative paths.
    await using picked = await makeTempDir();
    await Deno.mkdir(`${picked.path}/album/raw`, { recursive: true });
    const one = randomBytes(2000);
    const two = randomBytes(3000);
    await Deno.writeFile(`${picked.path}/album/one.jpg`, one);
    await Deno.writeFile(`${picked.path}/album/raw/two.raw`, two);
    await page.setInputFiles("#pickdir", `${picked.path}/album`);
    await waitFor(
      "the folder's two files to be stored",
      async () =>
        (await Deno.stat(`${server.root}/album/raw/two.raw`).catch(() => null)) !== null &&
        (await Deno.stat(`${server.root}/album/one.jpg`).catch(() => null)) !== null,
    );
    assert.deepEqual(await Deno.readFile(`${server.root}/album/one.jpg`), one);
    assert.deepEqual(await Deno.readFile(`${server.root}/album/raw/two.raw`), two);
    await page.waitForSelector('tr[data-name="album"]', { timeout: 15000 });

    // Dropped on the page. A drop made by a script carries files but no file-system entries
    // (webkitGetAsEntry answers null), which the page must still upload, not ignore.
    await page.evaluate(`(() => {
      const data = new DataTransfer();
      data.items.add(new File(["dropped on the page"], "dropped.txt"));
      document.dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
    })()`);
    await waitFor(
      "the dropped file to be stored",
      async () => (await Deno.stat(`${server.root}/dropped.txt`).catch(() => null)) !== null,
    );
    assert.equal(await Deno.readTextFile(`${server.root}/dropped.txt`), "dropped on the page");
    await page.waitForSelector('#results li.ok:has-text("dropped.txt")', { timeout: 15000 });

    // Download it back through the page's link, and compare.
    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.click('tr[data-name="from-browser.bin"] a[download]'),
    ]);
    assert.equal(download.suggestedFilename(), "from-browser.bin");
    assert.deepEqual(await Deno.readFile((await download.path())!), bytes);

    // Open a folder; it fits a phone's screen.
    await page.setViewportSize({ width: 390, height: 760 });
    await page.click('a[href="/photos/"]');
    await page.waitForURL(`${base}photos/`);
    assert.deepEqual(await names(), ["beach.jpg"]);
    const overflow = await page.evaluate<number>(
      "document.documentElement.scrollWidth - document.documentElement.clientWidth",
    );
    assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow} px on a phone`);

    if (Deno.env.get("FERRY_SCREENSHOT") === "1") {
      await Deno.mkdir(`${server.root}/holiday/videos`, { recursive: true });
      await Deno.writeFile(`${server.root}/holiday/videos/boat.mov`, randomBytes(3_100_000));
      await Deno.writeFile(`${server.root}/holiday/itinerary.pdf`, randomBytes(184_000));
      await Deno.writeFile(`${server.root}/holiday/beach.jpg`, randomBytes(2_400_000));
      await Deno.writeFile(`${server.root}/holiday/notes.txt`, randomBytes(1_800));
      await page.setViewportSize({ width: 760, height: 500 });
      await page.goto(`${base}holiday/`);
      await page.setInputFiles("#pick", [
        {
          name: "holiday.mov",
          mimeType: "video/quicktime",
          buffer: Buffer.from(randomBytes(2_000_000)),
        },
      ]);
      await page.waitForSelector("#results li.ok", { timeout: 15000 });
      await page.screenshot({ path: `${REPO_ROOT}docs/http-page.png` });
    }
    assert.equal(seen.dialogs, 0, "a script ran from a name");
    assert.deepEqual(seen.errors, []);
    // The page names its icon, so the browser does not ask for /favicon.ico: every visit would
    // otherwise log a refused request.
    await server.waitForLog(/http GET "photos\/" 200/);
    assert.ok(!server.lines.some((l) => l.includes("favicon")), server.lines.join("\n"));
  },
});

Deno.test({
  name: "http page: without JavaScript, the listing and its links, and no control that needs it",
  ...BROWSER_TEST,
  async fn() {
    const { server, base } = await startHttp(["--http-archives"]);
    await using _ = server;
    await Deno.mkdir(`${server.root}/photos`);
    const bytes = randomBytes(5000);
    await Deno.writeFile(`${server.root}/photos/beach.jpg`, bytes);
    await Deno.writeFile(`${server.root}/notes.txt`, randomBytes(10));

    await using browser = await launch({ javaScriptEnabled: false });
    const page = await browser.newPage();
    await page.goto(base);
    const visible = (selector: string) => page.locator(selector).isVisible();
    assert.ok(await visible("table.listing"), "the listing");
    // The filter, the sort buttons and the upload area work only with the script: none is shown.
    // The columns' titles are links instead, which the server sorts by.
    assert.equal(await visible("#filter"), false, "a filter box that cannot filter");
    assert.equal(await visible("#upload"), false, "an upload area that cannot upload");
    assert.equal(await page.locator("button.sort").count(), 0);
    assert.equal(await page.locator("th a.sort").count(), 3);
    await page.click('a[href="/photos/"]');
    await page.waitForURL(`${base}photos/`);
    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.click('tr[data-name="beach.jpg"] a[download]'),
    ]);
    assert.deepEqual(await Deno.readFile((await download.path())!), bytes);
    assert.ok(await visible('a[href="/photos/?tar"]'), "the folder's archive link");
  },
});

Deno.test({
  name: "http page: rename, delete and new folder in Chromium, from the keyboard too",
  ...BROWSER_TEST,
  async fn() {
    const { server, base } = await startHttp();
    await using _ = server;
    const root = server.root;
    const hostile = `<img src=x onerror=alert(1)>.txt`;
    await Deno.writeTextFile(`${root}/old.txt`, "old");
    await Deno.writeTextFile(`${root}/taken.txt`, "taken");
    await Deno.writeTextFile(`${root}/${hostile}`, "boo");
    await Deno.mkdir(`${root}/box/inner`, { recursive: true });
    await Deno.writeTextFile(`${root}/box/inner/f.txt`, "f");

    await using browser = await launch();
    const { page, seen } = await openWatched(browser, base);
    const row = (name: string) => `tr[data-name="${name.replace(/["\\]/g, "\\$&")}"]`;
    const result = (state: "ok" | "fail", text: string) =>
      page.waitForSelector(`#results li.${state}:has-text(${JSON.stringify(text)})`, {
        timeout: 15000,
      });
    const exists = (path: string) => Deno.lstat(path).then(() => true, () => false);

    // Rename from the keyboard: focus the row's button, Enter, type the new name, Enter.
    await page.focus(`${row("old.txt")} button[aria-label="Rename old.txt"]`);
    await page.keyboard.press("Enter");
    await page.waitForSelector("dialog[open] input:focus");
    await page.keyboard.press("Control+a");
    await page.keyboard.type("new.txt");
    await page.keyboard.press("Enter");
    await result("ok", "Rename old.txt");
    assert.equal(await Deno.readTextFile(`${root}/new.txt`), "old");
    assert.ok(!await exists(`${root}/old.txt`));
    await page.waitForSelector(row("new.txt"));

    // A taken name is refused, and the page says why.
    await page.click(`${row("new.txt")} button[aria-label="Rename new.txt"]`);
    await page.fill("dialog[open] input", "taken.txt");
    await page.click("dialog[open] button[type=submit]");
    const refused = await result("fail", "Rename new.txt");
    assert.match(await refused.textContent() ?? "", /409.*File exists/);
    assert.equal(await Deno.readTextFile(`${root}/taken.txt`), "taken");

    // Delete asks first: Escape backs out, and the question shows the name as text.
    await page.click(`${row(hostile)} button[aria-label="Delete ${hostile}"]`);
    await page.waitForSelector("dialog[open]");
    assert.equal(await page.textContent("dialog[open] p"), `Delete \u201c${hostile}\u201d?`);
    await page.keyboard.press("Escape");
    await page.waitForSelector("dialog", { state: "hidden" });
    assert.ok(await exists(`${root}/${hostile}`), "deleted without confirmation");
    await page.click(`${row(hostile)} button[aria-label="Delete ${hostile}"]`);
    await page.click("dialog[open] button[type=submit]");
    await result("ok", `Delete ${hostile}`);
    assert.ok(!await exists(`${root}/${hostile}`));
    await page.waitForSelector(row(hostile), { state: "detached" });

    // A folder goes with everything in it, once confirmed.
    await page.click(`${row("box")} button[aria-label="Delete box"]`);
    assert.match(await page.textContent("dialog[open] p") ?? "", /everything in it/);
    await page.click("dialog[open] button[type=submit]");
    await result("ok", "Delete box");
    assert.ok(!await exists(`${root}/box`));

    // A new folder, from the keyboard; it shows although it is empty, and opens.
    await page.focus("#newfolder");
    await page.keyboard.press("Enter");
    await page.waitForSelector("dialog[open] input:focus");
    await page.keyboard.type("made here");
    await page.keyboard.press("Enter");
    await result("ok", "New folder made here");
    assert.ok((await Deno.stat(`${root}/made here`)).isDirectory);
    await page.click('a[href="/made%20here/"]');
    await page.waitForURL(`${base}made%20here/`);
    await page.waitForSelector("#empty:not([hidden])");
    // The same actions work in a sub-folder: rename a file into place there.
    await Deno.writeTextFile(`${root}/made here/a.txt`, "a");
    await page.reload();
    await page.click(`${row("a.txt")} button[aria-label="Rename a.txt"]`);
    await page.fill("dialog[open] input", "b #1.txt");
    await page.keyboard.press("Enter");
    await result("ok", "Rename a.txt");
    assert.equal(await Deno.readTextFile(`${root}/made here/b #1.txt`), "a");

    assert.equal(seen.dialogs, 0, "a native dialog opened, or a script ran from a name");
    assert.deepEqual(seen.errors, []);

    // Read-only: the page offers no change at all.
    const readOnly = await startHttp(["--read-only"]);
    await using _ro = readOnly.server;
    await Deno.writeTextFile(`${readOnly.server.root}/r.txt`, "r");
    await page.goto(readOnly.base);
    await page.waitForSelector("#tools:not([hidden])");
    assert.equal(await page.locator("td button, #newfolder, #upload").count(), 0);
  },
});

Deno.test({
  name: "http page: sign in with the token, then upload",
  ...BROWSER_TEST,
  async fn() {
    const token = "browser-token-0123456789abcdef";
    await using tokenFile = await makeTempFile(token);
    const { server, base } = await startHttp(["--token-file", tokenFile.path]);
    await using _ = server;
    await Deno.writeTextFile(`${server.root}/secret.txt`, "hidden");

    await using browser = await launch();
    const page = await browser.newPage();
    const first = await page.goto(base);
    assert.equal(first?.status(), 401);
    assert.equal(await page.locator("table.listing").count(), 0);
    await page.fill("#token", "wrong-wrong-wrong-wrong");
    await page.click("button[type=submit]");
    await page.waitForSelector(".err");
    await page.fill("#token", token);
    await page.click("button[type=submit]");
    await page.waitForSelector('tr[data-name="secret.txt"]');
    const cookies = await browser.cookies();
    const session = cookies.find((c) => c.name === "ferry_session");
    assert.ok(session?.httpOnly, "the session cookie is HttpOnly");
    assert.equal(session?.sameSite, "Strict");
    assert.ok(!session?.value.includes(token), "the cookie carries the token");

    const bytes = randomBytes(1000);
    await page.setInputFiles("#pick", [
      { name: "signed.bin", mimeType: "application/octet-stream", buffer: Buffer.from(bytes) },
    ]);
    await page.waitForSelector("#results li.ok", { timeout: 15000 });
    assert.deepEqual(await Deno.readFile(`${server.root}/signed.bin`), bytes);

    await page.click("text=Sign out");
    await waitFor(
      "signed out",
      async () => !(await browser.cookies()).some((c) => c.name === "ferry_session"),
    );
  },
});

Deno.test({
  name:
    "http page: a folder past the sort limit is sorted by the server, through the titles' links",
  ...BROWSER_TEST,
  async fn() {
    // Pages bigger than the sort limit: the folder is shown whole, past what the page sorts.
    const { server, base } = await startHttp(["--http-page-size", String(SORT_MAX + 10)]);
    await using _ = server;
    const count = SORT_MAX + 1;
    await Deno.mkdir(`${server.root}/many/sub`, { recursive: true });
    for (let i = 0; i < count - 1; i++) {
      const size = i === 1234 ? 300 : i === 4321 ? 200 : 0;
      await Deno.writeFile(
        `${server.root}/many/f${String(i).padStart(5, "0")}`,
        new Uint8Array(size),
      );
    }
    await using browser = await launch();
    const { page, seen } = await openWatched(browser, `${base}many/`);
    assert.equal(await page.locator("button.sort").count(), 0, "no sort that would take seconds");
    const first = (n: number) =>
      page.$$eval(
        "table.listing tbody tr[data-name]",
        (rows, n) => rows.slice(0, n).map((r) => r.getAttribute("data-name")),
        n,
      );
    assert.deepEqual(await first(2), ["sub", "f00000"], "folders first, then files by name");
    // The column's title is a link: the server sends the folder sorted, the other way at the
    // second click.
    await page.click("th[data-key=size] a.sort");
    await page.waitForURL(`${base}many/?sort=size`);
    assert.deepEqual(await first(3), ["sub", "f00000", "f00001"]);
    await page.click("th[data-key=size] a.sort");
    await page.waitForURL(`${base}many/?sort=size&order=desc`);
    assert.deepEqual(await first(3), ["sub", "f01234", "f04321"]);
    assert.equal(await page.getAttribute("th[data-key=size]", "aria-sort"), "descending");
    // Filtering still works, once typing pauses.
    await page.type("#filter", "f04321");
    const shown = () =>
      page.$$eval(
        "table.listing tbody tr[data-name]:not([hidden])",
        (rows) => rows.map((r) => r.getAttribute("data-name")),
      );
    await waitFor("the filter to apply", async () =>
      await page.evaluate<number>(
        `document.querySelectorAll("table.listing tbody tr[data-name]:not([hidden])").length`,
      ) === 1);
    assert.deepEqual(await shown(), ["f04321"]);
    assert.deepEqual(seen, { dialogs: 0, errors: [] });
  },
});

Deno.test({
  name: "http page: a big folder a page at a time: links, a cursor that holds, search and refusals",
  ...BROWSER_TEST,
  async fn() {
    const { server, base } = await startHttp(["--http-page-size", "4"]);
    await using _ = server;
    await Deno.mkdir(`${server.root}/big/sub`, { recursive: true });
    for (let i = 0; i < 11; i++) {
      await Deno.writeFile(`${server.root}/big/f${String(i).padStart(2, "0")}.txt`, randomBytes(i));
    }
    await Deno.writeFile(`${server.root}/big/special-report.pdf`, randomBytes(3));
    await using browser = await launch();
    const { page, seen } = await openWatched(browser, `${base}big/`);
    const names = () =>
      page.$$eval(
        "table.listing tbody tr[data-name]:not([hidden])",
        (rows) => rows.map((r) => r.getAttribute("data-name")),
      );
    const info = async () => (await page.textContent("#pageinfo")) ?? "";
    assert.deepEqual(await names(), ["sub", "f00.txt", "f01.txt", "f02.txt"]);
    assert.match(await info(), /^Entries 1–4 of 13, by name, folders first, 4 a page/);
    assert.equal(
      await page.locator("button.sort").count(),
      0,
      "sorted by the server, not the page",
    );
    assert.equal(await page.locator("nav.pages").count(), 2, "links above and below the rows");

    // Next, with the mouse; a file added before the cursor meanwhile takes nothing away.
    await Deno.writeFile(`${server.root}/big/f00a.txt`, randomBytes(1));
    await page.locator("nav.pages >> nth=0").locator("a[rel=next]").click();
    await page.waitForURL(`${base}big/?after=f02.txt`);
    assert.deepEqual(await names(), ["f03.txt", "f04.txt", "f05.txt", "f06.txt"]);
    assert.match(await info(), /^Entries 6–9 of 14/);
    // Previous leads to the page before this one, as the folder now is.
    await page.locator("nav.pages >> nth=1").locator("a[rel=prev]").click();
    await page.waitForURL(`${base}big/?after=sub%2F`);
    assert.deepEqual(await names(), ["f00.txt", "f00a.txt", "f01.txt", "f02.txt"]);
    // Last, then First.
    await page.locator("nav.pages >> nth=0").locator("a[rel=last]").click();
    await page.waitForURL(/after=/);
    assert.deepEqual(await names(), ["f08.txt", "f09.txt", "f10.txt", "special-report.pdf"]);
    assert.equal(await page.locator("nav.pages >> nth=0").locator("a[rel=next]").count(), 0);
    await page.locator("nav.pages >> nth=0").locator("a[rel=first]").click();
    await page.waitForURL(`${base}big/`);

    // Sorted by date on the server, newest first at the second click, across the pages.
    const start = Date.now() / 1000 - 100_000;
    for (let i = 0; i < 11; i++) {
      const time = start + (i * 7 % 11) * 1000;
      await Deno.utime(`${server.root}/big/f${String(i).padStart(2, "0")}.txt`, time, time);
    }
    await Deno.utime(`${server.root}/big/f00a.txt`, start + 20_000, start + 20_000);
    await Deno.utime(`${server.root}/big/special-report.pdf`, start + 30_000, start + 30_000);
    await page.click("th[data-key=mtime] a.sort");
    await page.waitForURL(`${base}big/?sort=mtime`);
    await page.click("th[data-key=mtime] a.sort");
    await page.waitForURL(`${base}big/?sort=mtime&order=desc`);
    // Folders first; then the files by the dates set: special-report.pdf, f00a.txt, then fNN by
    // NN * 7 % 11: f03 (10), f06 (9), f09 (8), f01 (7), f04 (6)...
    assert.deepEqual(await names(), ["sub", "special-report.pdf", "f00a.txt", "f03.txt"]);
    assert.match(await info(), /^Entries 1–4 of 14, by date, newest first/);
    await page.locator("nav.pages >> nth=0").locator("a[rel=next]").click();
    await page.waitForURL(/sort=mtime&order=desc&after=\d+%2Ff03\.txt$/);
    assert.deepEqual(await names(), ["f06.txt", "f09.txt", "f01.txt", "f04.txt"]);
    // A search keeps the order; the titles then keep the search.
    await page.type("#q", "f0");
    await waitFor("the search's page", async () => (await info()).includes("“f0”"));
    assert.equal(new URL(page.url()).search, "?sort=mtime&order=desc&q=f0");
    assert.deepEqual(await names(), ["f00a.txt", "f03.txt", "f06.txt", "f09.txt"]);
    assert.equal(
      await page.getAttribute("th[data-key=name] a.sort", "href"),
      "/big/?q=f0",
    );
    await page.click("th[data-key=name] a.sort");
    await page.waitForURL(`${base}big/?q=f0`);
    await page.fill("#q", "");
    await waitFor("the whole folder", async () => !(await info()).includes("“"));

    // The search finds names on other pages, as typing pauses, and the address keeps it.
    await page.type("#q", "REPORT");
    await waitFor("the search's page", async () => (await info()).includes("“REPORT”"));
    assert.deepEqual(await names(), ["special-report.pdf"]);
    assert.match(await info(), /^Entries 1–1 of 1 whose name holds “REPORT” \(of 14/);
    assert.equal(new URL(page.url()).searchParams.get("q"), "REPORT");
    // A change through the page keeps the page it is on.
    page.once("dialog", () => {});
    await page.click('tr[data-name="special-report.pdf"] button:has-text("Delete")');
    await page.click('dialog button[type="submit"]');
    await waitFor("the row to go", async () => (await names()).length === 0);
    assert.match(await info(), /No name among the 13 entries of this folder holds “REPORT”/);

    // A folder that grows past a page under uploads says so, and keeps the uploads' results.
    await page.goto(`${base}big/sub/`);
    await page.setInputFiles(
      "#pick",
      ["one", "two", "three", "four", "five"].map((name) => ({
        name: `${name}.txt`,
        mimeType: "text/plain",
        buffer: Buffer.from(name),
      })),
    );
    await page.waitForSelector("#results #reshape", { timeout: 15000 });
    assert.equal(await page.locator("#results li.ok").count(), 5);
    assert.match(await page.textContent("#reshape") ?? "", /now holds more than a page: reload/);
    await page.click("#reshape a");
    await page.waitForSelector("#pageinfo");
    assert.match(await info(), /^Entries 1–4 of 5/);

    // A bad cursor is refused with its reason, on a page of its own.
    const bad = await page.goto(`${base}big/?after=..%2F..%2Fetc`);
    assert.equal(bad?.status(), 400);
    assert.match(
      await page.textContent("main") ?? "",
      /Refused \?after: a name in this folder has no slash/,
    );
    assert.deepEqual(seen, { dialogs: 0, errors: [] });
  },
});

Deno.test({
  name: "http page: a big folder's pages and search work without JavaScript",
  ...BROWSER_TEST,
  async fn() {
    const { server, base } = await startHttp(["--http-page-size", "2"]);
    await using _ = server;
    for (const name of ["a.txt", "b.txt", "c.txt", "needle.txt", "z.txt"]) {
      await Deno.writeTextFile(`${server.root}/${name}`, name);
    }
    await using browser = await launch({ javaScriptEnabled: false });
    const page = await browser.newPage();
    await page.goto(base);
    const names = () =>
      page.$$eval(
        "table.listing tbody tr[data-name]",
        (rows) => rows.map((r) => r.getAttribute("data-name")),
      );
    assert.deepEqual(await names(), ["a.txt", "b.txt"]);
    await page.locator("nav.pages >> nth=0").locator("a[rel=next]").click();
    await page.waitForURL(`${base}?after=b.txt`);
    assert.deepEqual(await names(), ["c.txt", "needle.txt"]);
    assert.ok(await page.locator("#q").isVisible(), "the search is a plain form");
    await page.fill("#q", "need");
    await page.press("#q", "Enter");
    await page.waitForURL(`${base}?q=need`);
    assert.deepEqual(await names(), ["needle.txt"]);
    // The columns' titles are links that sort on the server; a search keeps the order.
    await page.goto(base);
    await page.click("th[data-key=size] a.sort");
    await page.waitForURL(`${base}?sort=size`);
    await page.click("th[data-key=size] a.sort");
    await page.waitForURL(`${base}?sort=size&order=desc`);
    assert.deepEqual(await names(), ["needle.txt", "z.txt"]);
    await page.fill("#q", ".txt");
    await page.press("#q", "Enter");
    await page.waitForURL(`${base}?q=.txt&sort=size&order=desc`);
    assert.deepEqual(await names(), ["needle.txt", "z.txt"]);
  },
});
