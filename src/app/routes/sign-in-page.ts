/** The demo app's sign-in page for /dashboard (ADMIN_TOKEN set), answered with 401 by routes/dashboard.ts. */
export const SIGN_IN_PAGE = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>Sign in · Background tasks</title>
    <link rel="stylesheet" href="/dashboard/dashboard.css" />
  </head>
  <body>
    <main class="sign-in">
      <h1>Background tasks</h1>
      <p>This dashboard needs the admin token (<code>ADMIN_TOKEN</code>).</p>
      <!-- error -->
      <form method="post" action="/dashboard/sign-in">
        <label for="token">Admin token</label>
        <input id="token" name="token" type="password" autocomplete="current-password" required />
        <button type="submit">Sign in</button>
      </form>
    </main>
  </body>
</html>`
