// The web console's whole road in Firefox (Debian's firefox-esr, over WebDriver BiDi with
// puppeteer-core): sign in, upload a model and a dataset, submit a recipe job from the form with
// quick benchmark settings, watch it reach "succeeded" over its event stream, read the report
// framed in the page, fetch the artifact through its download link, narrow the window, sign out.
// Run by tests/console/test_console_firefox.py, which checks what this prints (one JSON line)
// against the API. Inputs come from the environment: SHRINK_URL, SHRINK_API_KEY, MODEL_FILE,
// DATASET_FILE, SCREENSHOT_DIR, FIREFOX.
import puppeteer from "puppeteer-core";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`set ${name}`);
  return value;
};
const base = env("SHRINK_URL");
const failures = [];
const requests = [];

const browser = await puppeteer.launch({ browser: "firefox", executablePath: env("FIREFOX"), headless: true });
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(20000);
  await page.setViewport({ width: 1280, height: 900 });
  page.on("pageerror", (error) => failures.push(String(error)));
  page.on("dialog", (dialog) => dialog.accept()); // the confirmations before a delete
  page.on("request", (request) => requests.push(request.url()));
  const text = (selector) => page.$eval(selector, (el) => el.textContent.trim());
  const waitText = (selector, expected, timeout = 20000) => page.waitForFunction(
    (s, e) => document.querySelector(s)?.textContent.includes(e), { timeout }, selector, expected);

  await page.goto(`${base}/`);
  await page.type("#api-key", env("SHRINK_API_KEY"));
  await page.click("#sign-in-form button[type=submit]");
  await waitText("#who", "console-firefox");
  const stored = await page.evaluate(() => localStorage.length + sessionStorage.length + document.cookie.length);

  // Uploads, each listed once stored.
  await (await page.$("#models-file")).uploadFile(env("MODEL_FILE"));
  await page.type("#models-name", "tiny");
  await page.click('form[data-kind="models"] button[type=submit]');
  await waitText("#models-list", "tiny");
  await (await page.$("#datasets-file")).uploadFile(env("DATASET_FILE"));
  await page.click('form[data-kind="datasets"] button[type=submit]');
  await waitText("#datasets-list", "8 rows");

  // A recipe job from the form: quantize fp16, quick benchmark settings.
  await page.waitForFunction(() => document.querySelector("#job-model")?.options.length > 0);
  await page.select('select[aria-label="Step 1 operation"]', "quantize");
  await page.select('select[aria-label="Step 1 method"]', "fp16");
  await page.click("#job-form details summary");
  const quick = { batch_sizes: "1", warmup_runs: "2", min_runs: "5", max_runs: "30", time_budget_seconds: "2", fidelity_rows: "8" };
  for (const [name, value] of Object.entries(quick)) {
    const field = await page.$(`#job-form [id^="bench-${name}-"]:not([id$="-hint"])`);
    await field.evaluate((el) => { el.value = ""; }); // typed after the default, not onto it
    await field.type(value);
  }
  await page.$eval('#job-form input[type=checkbox][id^="bench-measure_memory-"]', (el) => { if (el.checked) el.click(); });
  await page.click("#job-form button[type=submit]");
  await page.waitForSelector("#job-detail-title");
  const jobId = (await text("#job-detail-title")).split(/\s+/)[1];
  await waitText("#job-state", "succeeded", 60000);
  const progress = await page.$eval("#job-progress", (el) => el.value);

  // The report, framed in the page by the session cookie.
  await page.click("::-p-text(Show report)");
  const frameHandle = await page.waitForSelector("#report-frame");
  const frame = await frameHandle.contentFrame();
  await frame.waitForFunction((id) => document.body && document.body.textContent.includes(id), {}, jobId);
  await page.screenshot({ path: `${env("SCREENSHOT_DIR")}/console-firefox-1280.png`, fullPage: true });
  const wide = await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);

  // The artifact through the page's own download link (the session cookie authorizes it).
  const link = await page.$eval('a[aria-label^="Download model"]', (a) => a.href);
  const downloaded = await page.evaluate(async (href) => {
    const body = await (await fetch(href)).arrayBuffer();
    const digest = await crypto.subtle.digest("SHA-256", body);
    return { size: body.byteLength, sha256: [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("") };
  }, link);

  await page.setViewport({ width: 800, height: 900 });
  await page.screenshot({ path: `${env("SCREENSHOT_DIR")}/console-firefox-800.png`, fullPage: true });
  const narrow = await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);

  await page.click("#sign-out");
  await page.waitForSelector("#api-key", { visible: true });
  const afterSignOut = await page.evaluate(async () => (await fetch("/v1/jobs")).status);

  console.log(JSON.stringify({
    browser: await browser.version(), job_id: jobId, progress, stored, wide, narrow, downloaded, after_sign_out: afterSignOut,
    event_stream: requests.some((url) => url.endsWith(`/v1/jobs/${jobId}/events`)), failures,
  }));
} finally {
  await browser.close();
}
