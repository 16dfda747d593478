import { Agent, request } from 'undici'
const agent = new Agent({ connections: 64 })
const N = Number(process.argv[2] ?? 5000), C = 32
for (;;) { try { const r = await request('http://127.0.0.1:8711/health', {dispatcher: agent}); await r.body.dump(); break } catch { await new Promise(r=>setTimeout(r,100)) } }
let next = 0, ok = 0
const t0 = Date.now()
await Promise.all(Array.from({length: C}, async () => { while (next < N) { const i = next++; const r = await request(`http://127.0.0.1:8711/send-message?message=m${i}`, {method:'POST', dispatcher: agent}); await r.body.dump(); if (r.statusCode===200) ok++ } }))
console.log('posted', ok, 'in', Date.now()-t0, 'ms')
await agent.close()
