/**
 * A first dashboard: one static page that asks for the admin token once
 * (kept in the browser's localStorage) and lists functions through the same
 * API the CLI uses. No build step, no framework: it has to load offline.
 */
export function dashboardPage(): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>funcd</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid #ddd}
.ready{color:#080}.failing{color:#b00}code{background:#f4f4f4;padding:0 .2rem}
#token{display:none}
</style></head>
<body>
<h1>funcd</h1>
<form id="token"><label>Admin token <input id="t" type="password" size="40"></label> <button>Save</button>
<p>It is printed at start-up and kept in the <code>token</code> file of the data dir.</p></form>
<p id="msg"></p>
<table id="fns" hidden><thead><tr><th>Function</th><th>Runtime</th><th>Status</th><th>Revision</th><th>Instances</th><th>Routes</th></tr></thead><tbody></tbody></table>
<p><a href="/api/docs">API docs</a> · <a href="/metrics">metrics</a></p>
<script>
const form=document.getElementById("token"),msg=document.getElementById("msg");
function esc(s){return String(s).replace(/[&<>"]/g,c=>({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]))}
async function load(){
  const token=localStorage.getItem("funcd-token");
  if(!token){form.style.display="block";return}
  const r=await fetch("/api/v1/functions",{headers:{authorization:"Bearer "+token}});
  if(r.status===401){localStorage.removeItem("funcd-token");form.style.display="block";msg.textContent="That token was refused.";return}
  const {items}=await r.json();
  const body=document.querySelector("#fns tbody");
  body.innerHTML=items.map(f=>"<tr><td><a href='/function/"+esc(f.name)+"'>"+esc(f.name)+"</a></td><td>"+esc(f.runtime)+"</td><td class='"+esc(f.status)+"'>"+esc(f.status)+"</td><td>"+(f.activeRevision?"#"+f.activeRevision.number:"-")+"</td><td>"+f.instances.length+"</td><td>"+f.routes.map(esc).join(" ")+"</td></tr>").join("");
  document.getElementById("fns").hidden=false;msg.textContent=items.length?"":"No functions deployed yet.";
}
form.addEventListener("submit",e=>{e.preventDefault();localStorage.setItem("funcd-token",document.getElementById("t").value.trim());form.style.display="none";load()});
load();setInterval(load,5000);
</script></body></html>`;
}
