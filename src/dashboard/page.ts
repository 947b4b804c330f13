/**
 * A first dashboard: one static page on the admin listener that asks for the admin token and lists
 * functions through the same API the CLI uses. No build step, no framework: it has to load offline.
 *
 * The token lives in this tab's sessionStorage on the admin origin only (gone when the tab closes, never
 * shared with another tab, never a cookie): functions serve their pages from the gateway's origin, which
 * is another port and so another origin, and cannot read it. Links to functions point at the gateway's
 * origin and open without an `opener`.
 */
export function dashboardPage(options: { gatewayOrigin: string }): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>funcd</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid #ddd}
.ready{color:#080}.failing{color:#b00}code{background:#f4f4f4;padding:0 .2rem}
#token{display:none}
</style></head>
<body>
<h1>funcd</h1>
<form id="token"><label>Admin token <input id="t" type="password" size="40" autocomplete="off"></label> <button>Sign in</button>
<p>It is printed at start-up and kept in the <code>token</code> file of the data dir. This tab keeps it until it closes.</p></form>
<p id="msg"></p>
<table id="fns" hidden><thead><tr><th>Function</th><th>Runtime</th><th>Status</th><th>Revision</th><th>Instances</th><th>Routes</th></tr></thead><tbody></tbody></table>
<p><a href="/api/docs">API docs</a> · <a href="/metrics">metrics</a> · <a href="#" id="out">sign out</a></p>
<script>
const GATEWAY=${JSON.stringify(options.gatewayOrigin).replaceAll("<", "\\u003c")};
const KEY="funcd-token",form=document.getElementById("token"),msg=document.getElementById("msg");
function esc(s){return String(s).replace(/[&<>"']/g,c=>({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]))}
function link(path,text){return "<a rel='noopener noreferrer' target='_blank' href='"+esc(GATEWAY+path)+"'>"+esc(text)+"</a>"}
async function load(){
  const token=sessionStorage.getItem(KEY);
  if(!token){form.style.display="block";document.getElementById("fns").hidden=true;return}
  const r=await fetch("/api/v1/functions",{headers:{authorization:"Bearer "+token}});
  if(r.status===401){sessionStorage.removeItem(KEY);form.style.display="block";msg.textContent="That token was refused.";return}
  const {items}=await r.json();
  const body=document.querySelector("#fns tbody");
  body.innerHTML=items.map(f=>"<tr><td>"+link("/function/"+encodeURIComponent(f.name),f.name)+"</td><td>"+esc(f.runtime)+"</td><td class='"+esc(f.status)+"'>"+esc(f.status)+"</td><td>"+(f.activeRevision?"#"+f.activeRevision.number:"-")+"</td><td>"+f.instances.length+"</td><td>"+f.routes.map(r=>link(r,r)).join(" ")+"</td></tr>").join("");
  document.getElementById("fns").hidden=false;msg.textContent=items.length?"":"No functions deployed yet.";
}
form.addEventListener("submit",e=>{e.preventDefault();sessionStorage.setItem(KEY,document.getElementById("t").value.trim());document.getElementById("t").value="";form.style.display="none";load()});
document.getElementById("out").addEventListener("click",e=>{e.preventDefault();sessionStorage.removeItem(KEY);msg.textContent="";load()});
load();setInterval(load,5000);
</script></body></html>`;
}
