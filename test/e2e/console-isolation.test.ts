/**
 * Issue 11 B as a browser sees it: a person signs in to the console, then opens a function whose page
 * tries to take the admin token (storage, cookies) and to use the API on both listeners. It must get
 * neither the token nor a 2xx. Real headless Chromium (the Debian `chromium` package, driven by
 * playwright-core, no browser download); under CI=true a missing Chromium fails the suite.
 */
import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Daemon, removeDir, startDaemon } from "../helpers/daemon.js";

/**
 * The little of playwright-core this test uses. Imported at run time by a name the compiler does not
 * resolve: worktrees and checkouts whose node_modules predate the dependency still typecheck (the test
 * itself then fails, as it should, until `npm install`).
 */
interface Page {
  goto(url: string): Promise<{ status(): number } | null>;
  fill(selector: string, value: string): Promise<void>;
  click(selector: string): Promise<void>;
  waitForSelector(selector: string): Promise<unknown>;
  waitForLoadState(): Promise<void>;
  waitForFunction(expression: string): Promise<{ jsonValue(): Promise<unknown> }>;
  evaluate(expression: string): Promise<unknown>;
  content(): Promise<string>;
  url(): string;
  close(): Promise<void>;
}
interface BrowserContext {
  newPage(): Promise<Page>;
  waitForEvent(event: "page"): Promise<Page>;
}
interface Browser {
  newContext(): Promise<BrowserContext>;
  close(): Promise<void>;
}
const PLAYWRIGHT: string = "playwright-core";
const { chromium } = (await import(PLAYWRIGHT)) as {
  chromium: { launch(options: { executablePath: string; args: string[] }): Promise<Browser> };
};

const CHROMIUM = "/usr/bin/chromium";
const isCI = process.env.CI === "true";
const skip = !isCI && !existsSync(CHROMIUM) ? `no ${CHROMIUM} (apt-get install chromium)` : undefined;

/**
 * The attacker: a function page that collects everything script can reach on its origin, then calls
 * the API on its own origin and on the admin origin (whose address it is given in its env — the best case for it),
 * with whatever token it found and with the browser's ambient credentials.
 */
const EVIL = `
const page = \`<!doctype html><html><body><pre id="loot">working</pre><script>
(async () => {
  const admin = \${JSON.stringify(process.env.ADMIN_URL)};
  const dump = (s) => { const o = {}; for (let i = 0; i < s.length; i++) o[s.key(i)] = s.getItem(s.key(i)); return o; };
  const loot = { localStorage: dump(localStorage), sessionStorage: dump(sessionStorage), cookies: document.cookie, calls: [] };
  const found = Object.values(loot.localStorage).concat(Object.values(loot.sessionStorage));
  const tries = [];
  for (const base of ["", admin]) {
    tries.push([base + "/api/v1/secrets", { credentials: "include" }]);
    for (const token of found) tries.push([base + "/api/v1/secrets", { headers: { authorization: "Bearer " + token } }]);
  }
  for (const [url, init] of tries) {
    try { const r = await fetch(url, init); loot.calls.push({ url, status: r.status, body: (await r.text()).slice(0, 200) }); }
    catch (e) { loot.calls.push({ url, error: String(e) }); }
  }
  try { const w = window.open(admin + "/ui/"); await new Promise((r) => setTimeout(r, 500)); loot.openedStorage = w.sessionStorage.getItem("funcd-token"); }
  catch (e) { loot.openedStorage = "blocked: " + e.name; }
  document.getElementById("loot").textContent = JSON.stringify(loot);
})();
</script></body></html>\`;
module.exports = { main: () => ({ statusCode: 200, headers: { "content-type": "text/html" }, body: page }) };
`;

interface Loot {
  localStorage: Record<string, string>;
  sessionStorage: Record<string, string>;
  cookies: string;
  calls: { url: string; status?: number; body?: string; error?: string }[];
  openedStorage: string | null;
}

describe.skipIf(skip !== undefined)(
  `the console's token out of a function's reach${skip ? ` (skipped: ${skip})` : ""}`,
  () => {
    let daemon: Daemon;
    let browser: Browser;
    let context: BrowserContext;

    beforeAll(async () => {
      daemon = await startDaemon({ env: { FUNCD_POOL_SIZE: "0" } });
      expect(
        (await daemon.api("PUT", "/api/v1/secrets/db-password", { value: "hunter2" })).status,
      ).toBeLessThan(300);
      const deployed = await daemon.api("PUT", "/api/v1/functions/evil", {
        runtime: "nodejs20",
        files: { "handler.js": EVIL },
        env: { ADMIN_URL: daemon.adminUrl },
      });
      expect(deployed.status).toBe(201);
      browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
      context = await browser.newContext();
    }, 90_000);

    afterAll(async () => {
      await browser?.close();
      await daemon?.stop();
      if (daemon) removeDir(daemon.dataDir);
    });

    async function signIn() {
      const console = await context.newPage();
      await console.goto(`${daemon.adminUrl}/ui/`);
      await console.fill("#t", daemon.token);
      await console.click("form#token button");
      await console.waitForSelector("#fns:not([hidden]) >> text=evil");
      // The console holds the token where only the admin origin's scripts can read it.
      expect(await console.evaluate('sessionStorage.getItem("funcd-token")')).toBe(daemon.token);
      expect(await console.evaluate("localStorage.length")).toBe(0);
      return console;
    }

    async function loot(url: string | Page): Promise<Loot> {
      const page = typeof url === "string" ? await context.newPage() : url;
      if (typeof url === "string") await page.goto(url);
      // Expressions as strings: they run in the page, whose DOM this file's types do not know.
      const text = await page.waitForFunction(
        '(() => { const t = document.getElementById("loot")?.textContent; return t && t !== "working" ? t : null; })()',
      );
      const found = JSON.parse(String(await text.jsonValue())) as Loot;
      await page.close();
      return found;
    }

    function expectNothingTaken(found: Loot) {
      expect(JSON.stringify(found)).not.toContain(daemon.token);
      expect(found.cookies).toBe("");
      expect(found.openedStorage).toMatch(/^blocked/);
      expect(found.calls.length).toBeGreaterThanOrEqual(2);
      for (const call of found.calls) {
        if (call.status !== undefined) expect(call.status, call.url).toBeGreaterThanOrEqual(400);
        expect(call.body ?? "").not.toContain("db-password");
      }
    }

    it("a function page opened from the console gets no token and no 2xx from the API on either origin", async () => {
      const console = await signIn();
      // Open the function the way a person would: its link in the console (a new tab on the gateway's origin).
      const [tab] = await Promise.all([context.waitForEvent("page"), console.click("a >> text=evil")]);
      await tab.waitForLoadState();
      expect(new URL(tab.url()).origin).toBe(new URL(daemon.url).origin);
      expect(await tab.evaluate("window.opener")).toBeNull();
      const found = await loot(tab);
      expectNothingTaken(found);
      // Its same-origin call reached the API and was refused for want of a token.
      expect(found.calls.find((c) => c.url === "/api/v1/secrets")?.status).toBe(401);
      await console.close();
    });

    it("the gateway's origin never serves the console, and wipes a token the old dashboard left there", async () => {
      const page = await context.newPage();
      // What the first dashboard did: the token in the gateway origin's localStorage.
      await page.goto(`${daemon.url}/function/evil`);
      await page.evaluate(`localStorage.setItem("funcd-token", ${JSON.stringify(daemon.token)})`);
      expect(await page.evaluate('localStorage.getItem("funcd-token")')).toBe(daemon.token);
      const answer = await page.goto(`${daemon.url}/ui/`);
      expect(new URL(page.url()).origin).toBe(new URL(daemon.adminUrl).origin);
      expect(answer?.status()).toBe(200);
      await page.close();
      expectNothingTaken(await loot(`${daemon.url}/function/evil`));
    });

    it("the admin listener never runs a function", async () => {
      const page = await context.newPage();
      const answer = await page.goto(`${daemon.adminUrl}/function/evil`);
      expect(answer?.status()).toBe(404);
      expect(await page.content()).not.toContain("loot");
      await page.close();
    });

    it("the console cannot be framed by a function's page", async () => {
      const res = await fetch(`${daemon.adminUrl}/ui/`);
      expect(res.headers.get("content-security-policy")).toContain("frame-ancestors 'none'");
      expect(res.headers.get("x-frame-options")).toBe("DENY");
      expect(res.headers.get("set-cookie")).toBeNull();
    });
  },
);
