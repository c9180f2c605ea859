// Browser test of `hubctl serve` on the real RabbitMQ with real dead
// letters: Playwright (playwright-core, pinned in package-lock.json)
// drives Debian's chromium headless.
//
//   cd cmd/hubctl/console-test && npm ci && node console.test.mjs
//
// Environment: HUB_TEST_AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/),
// CHROMIUM (default /usr/bin/chromium), SCREENSHOTS (directory for the
// screenshots, default ./screenshots).
import { chromium } from "playwright-core";
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { randomBytes } from "node:crypto";
import assert from "node:assert/strict";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../../..");
const amqpURL = process.env.HUB_TEST_AMQP_URL || "amqp://guest:guest@127.0.0.1:5672/";
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
const shots = resolve(process.env.SCREENSHOTS || join(here, "screenshots"));
const topic = "console" + randomBytes(4).toString("hex");
const XSS = `<script>window.__xss=1</script><img src=x onerror="window.__xss=2">`;

// The whole test is bounded: a hang fails it instead of holding CI.
const overall = setTimeout(() => {
  console.error("console test: timed out after 240s");
  process.exit(1);
}, 240_000);

const work = mkdtempSync(join(tmpdir(), "hubctl-console-"));
const bin = (name) => join(work, name);
let serve, context;

function log(...a) {
  console.log("console test:", ...a);
}

function go(...args) {
  return execFileSync("go", args, { cwd: root, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], timeout: 180_000 });
}

// startServe runs hubctl serve on a free loopback port and resolves with
// its base URL once it prints it.
function startServe() {
  return new Promise((resolveURL, reject) => {
    const p = spawn(bin("hubctl"), ["serve", "--listen", "127.0.0.1:0", "--topic", `${topic}:normalise,audit`, "--sample", "1s", "--idle", "500ms"], {
      env: { ...process.env, HUBCTL_BROKER: amqpURL },
      stdio: ["ignore", "pipe", "pipe"],
    });
    serve = p;
    let out = "";
    const timer = setTimeout(() => reject(new Error("hubctl serve did not start within 20s: " + out)), 20_000);
    p.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/console on (http:\/\/[^\s]+\/)/);
      if (m) {
        clearTimeout(timer);
        resolveURL(m[1]);
      }
    });
    p.stderr.on("data", (d) => process.stderr.write("  serve: " + d));
    p.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`hubctl serve exited with ${code}: ${out}`));
    });
  });
}

function stopServe() {
  if (!serve || serve.exitCode !== null) return Promise.resolve();
  return new Promise((done) => {
    const kill = setTimeout(() => serve.kill("SIGKILL"), 15_000);
    serve.on("exit", () => {
      clearTimeout(kill);
      done();
    });
    serve.kill("SIGTERM");
  });
}

// depth asks hubctl for a queue's depth on the broker.
function depth(t, group) {
  const args = ["topics", "stats", t, "--json", "--broker", amqpURL];
  if (group) args.push("--group", group);
  const out = execFileSync(bin("hubctl"), args, { encoding: "utf8", timeout: 30_000 });
  const rows = out.trim().split("\n").map((l) => JSON.parse(l));
  const row = rows.find((r) => r.group === (group || t));
  assert.ok(row, `no queue for ${t} ${group || ""} in ${out}`);
  return row.depth;
}

async function shot(page, name) {
  await page.screenshot({ path: join(shots, name + ".png"), fullPage: true });
}

async function main() {
  mkdirSync(shots, { recursive: true });
  log("building hubctl and the seed program");
  go("build", "-o", bin("hubctl"), "./cmd/hubctl");
  go("build", "-o", bin("seed"), "./cmd/hubctl/console-test/seed");
  log("making 6 dead letters on", topic);
  execFileSync(bin("seed"), ["-broker", amqpURL, "-topic", topic], { stdio: "inherit", timeout: 90_000 });
  assert.equal(depth(topic + ".dlq"), 6);

  const base = await startServe();
  log("console on", base);
  context = await chromium.launchPersistentContext(join(work, "profile"), {
    executablePath: chromiumPath,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1280, height: 800 },
  });
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(20_000);
  const consoleErrors = [];
  page.on("console", (m) => m.type() === "error" && consoleErrors.push(m.text()));
  page.on("dialog", (d) => {
    throw new Error("unexpected dialog: " + d.message());
  });

  // Topics: the dead letters and the queue nobody consumes.
  await page.goto(base);
  const dlqRow = page.locator(`tr[data-queue="${topic}.dlq"]`);
  await dlqRow.getByText("6 dead letters").waitFor();
  await page.locator(`tr[data-queue="${topic}"]`).getByText("no consumer").waitFor();
  const headers = (await page.request.get(base)).headers();
  assert.match(headers["content-security-policy"], /frame-ancestors 'none'/);
  assert.doesNotMatch(headers["content-security-policy"], /unsafe-inline/);
  assert.equal(headers["x-frame-options"], "DENY");
  assert.equal(headers["x-content-type-options"], "nosniff");
  // The sampler adds points while the page is open: wait for a refresh.
  await page.waitForFunction((q) => {
    const el = document.querySelector(`tr[data-queue="${q}"] svg`);
    return el && /over ([3-9]|\d\d+) samples/.test(el.getAttribute("aria-label"));
  }, topic + ".dlq");
  await shot(page, "topics");

  // Dead letters: filter by handler with the keyboard, then by error text.
  await dlqRow.getByRole("link", { name: `${topic}.dlq` }).click();
  await page.locator("#count").getByText("6 letters match").waitFor();
  await page.getByLabel("Handler").fill("audit");
  await page.getByLabel("Handler").press("Enter");
  await page.locator("#count").getByText("2 letters match").waitFor();
  await page.getByLabel("Handler").fill("");
  await page.getByLabel("Error contains").fill("xss record");
  await page.getByRole("button", { name: "Filter" }).click();
  await page.locator("#count").getByText("1 letter match").waitFor();

  // The letter with the XSS payload: shown as text, never run.
  await page.locator("table.letters tbody a").first().click();
  await page.locator("#letter-payload").waitFor();
  const payload = await page.locator("#letter-payload").textContent();
  assert.ok(payload.includes(`</pre><script>window.__xss=1</script><img src=x onerror=\\"window.__xss=2\\">`), "payload shown as text: " + payload);
  assert.ok(payload.includes('"kind": "xss"'), "payload pretty-printed: " + payload);
  const meta = await page.locator("#letter-metadata").textContent();
  assert.ok(meta.includes(XSS), "metadata shown as text");
  assert.equal(await page.evaluate(() => window.__xss), undefined, "the XSS payload ran");
  assert.equal(await page.locator("main script, main img").count(), 0, "letter markup reached the DOM");
  await shot(page, "letter");

  // Replay two: select r1 and r2 among normalise's letters. The seeded
  // hub has stopped, so normalise has no consumer: a plain replay is
  // refused and keeps the letters; a forced one goes through.
  for (const force of [false, true]) {
    await page.goto(`${base}dlq/${topic}?handler=normalise`);
    await page.locator("#count").getByText("4 letters match").waitFor();
    for (const r of ["r1", "r2"]) {
      const row = page.locator("table.letters tbody tr", { hasText: `invalid record ${r} rejected` });
      await row.getByRole("checkbox").check();
    }
    if (force) await shot(page, "dead-letters");
    await page.getByRole("button", { name: "Replay selected" }).click();
    await page.locator("#confirm-count").getByText("2 letters").waitFor();
    if (force) {
      await page.getByLabel(/Replay even to a handler with no consumer/).check();
      await shot(page, "confirm");
    }
    await page.getByRole("button", { name: "Replay 2 letters" }).click();
    if (force) {
      await page.locator("#job-state").getByText("done: 2 of 2").waitFor();
      await shot(page, "job");
    } else {
      await page.locator("#job-state").getByText(/failed: 0 of 2.*no consumer/).waitFor();
    }
  }

  // Purge one, from its own page.
  await page.goto(`${base}dlq/${topic}?error=${encodeURIComponent("invalid record r3")}`);
  await page.locator("#count").getByText("1 letter match").waitFor();
  await page.locator("table.letters tbody a").first().click();
  await page.getByRole("button", { name: "Purge this letter" }).click();
  await page.locator("#confirm-count").getByText("1 letter").waitFor();
  await page.getByRole("button", { name: "Purge 1 letter" }).click();
  await page.locator("#job-state").getByText("done: 1 of 1").waitFor();

  // A state change without the CSRF token is refused, and so is one from
  // another origin with it.
  await page.goto(`${base}dlq/${topic}`);
  await page.locator("#count").getByText("3 letters match").waitFor();
  const csrf = await page.locator('input[name="csrf"]').first().inputValue();
  const noToken = await page.evaluate(async () => {
    const r = await fetch(location.pathname + "/confirm", { method: "POST", body: new URLSearchParams({ action: "purge", scope: "filter" }) });
    return r.status;
  });
  assert.equal(noToken, 403, "a purge without the CSRF token");
  const wrongToken = await page.evaluate(async () => {
    const r = await fetch(location.pathname + "/confirm", { method: "POST", body: new URLSearchParams({ action: "purge", scope: "filter", csrf: "forged" }) });
    return r.status;
  });
  assert.equal(wrongToken, 403, "a purge with a forged CSRF token");
  const crossOrigin = await page.request.post(`${base}dlq/${topic}/confirm`, {
    form: { action: "purge", scope: "filter", csrf },
    headers: { Origin: "http://evil.example", "Sec-Fetch-Site": "cross-site" },
    maxRedirects: 0,
  });
  assert.equal(crossOrigin.status(), 403, "a cross-origin purge");
  // The page's own form still works with the token (not refused wholesale).
  const sameOrigin = await page.request.post(`${base}dlq/${topic}/confirm`, {
    form: { action: "purge", scope: "filter", csrf },
    headers: { Origin: base.replace(/\/$/, "") },
  });
  assert.equal(sameOrigin.status(), 200, "a same-origin confirmation with the token");
  assert.deepEqual(consoleErrors.filter((e) => !/Failed to load resource.*403/.test(e)), [], "browser console errors");

  // The broker afterwards: 6 - 2 replayed - 1 purged letters left; the
  // two replayed wait in normalise's queue (nothing consumes it). On
  // RabbitMQ the topic's exchange also copies them to audit's queue, whose
  // hub would ack them unhandled (they carry hub-target-group normalise).
  await context.close();
  context = null;
  await stopServe();
  assert.equal(depth(topic + ".dlq"), 3, "dead letters left");
  assert.equal(depth(topic, "normalise"), 2, "replayed letters in normalise's queue");
  log("ok; screenshots in", shots);
}

let failed = false;
try {
  await main();
} catch (e) {
  failed = true;
  console.error("console test: FAIL:", e);
} finally {
  if (context) await context.close().catch(() => {});
  await stopServe();
  try {
    execFileSync(bin("seed"), ["-delete", "-broker", amqpURL, "-topic", topic], { stdio: "inherit", timeout: 30_000 });
  } catch (e) {
    console.error("console test: cleanup:", e.message);
  }
  rmSync(work, { recursive: true, force: true });
  clearTimeout(overall);
}
process.exit(failed ? 1 : 0);
