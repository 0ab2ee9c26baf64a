// Screenshots of TensorBoard's HParams view for docs/compare.md, taken with headless Chromium.
//
//   tensorboard --logdir results/split-digits/tensorboard --host 127.0.0.1 --port 6006 &
//   npm install playwright-core        # drives the system's Chromium (apt-get install chromium)
//   node docs/img/screenshots.js http://127.0.0.1:6006 docs/img
//
// Writes hparams_table.png (the table view) and
// hparams_parallel_coordinates.png (log axes for gamma, beta and lr, lines coloured by the
// worst-case accuracy).
const { chromium } = require('playwright-core');

(async () => {
  const [url, out] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run',
           '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage({ viewport: { width: 2100, height: 950 } });
  await page.goto(`${url}/#hparams`);
  await page.locator('text=/-preset/').first().waitFor({ timeout: 60000 });
  await page.waitForTimeout(2000);
  await page.screenshot({ path: `${out}/hparams_table.png` });

  await page.locator('text=/parallel coordinates view/i').first().click();
  await page.waitForTimeout(2000);
  for (const name of ['beta', 'gamma', 'lr']) {
    await page.locator('.column', { hasText: new RegExp(`^\\s*${name}\\s`) }).first()
      .locator('text=Logarithmic').click();
  }
  await page.locator('#colorByListBox').first().evaluate((el) => {  // colour by the worst-case accuracy
    const items = Array.from(el.querySelectorAll('paper-item'));
    el.selected = items.findIndex((i) => i.textContent.trim() === 'worst_avg_acc');
  });
  await page.waitForTimeout(2000);
  await page.screenshot({ path: `${out}/hparams_parallel_coordinates.png` });
  await browser.close();
})().catch((e) => { console.error(e); process.exit(1); });
