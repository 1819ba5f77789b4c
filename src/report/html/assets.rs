//! The page's inline assets: SVG pattern definitions, CSS and a few lines of
//! JavaScript (no CDN: the report opens offline).

pub(super) const DEFS: &str = r##"<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="3" height="6" fill="#d62728" fill-opacity=".55"/></pattern></defs>"##;

pub(super) const CSS: &str = r#"
:root{--ok:#1f77b4;--fail:#d62728;--info:#ff7f0e;--valid:#1a7f37;--invalid:#c62828;--unknown:#b26a00}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1f24;background:#f6f7f9}
main{max-width:1240px;margin:0 auto;padding:0 16px 24px}
h2{font-size:18px;margin:22px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
h3{font-size:15px;margin:14px 0 6px}
section{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:4px 16px 12px;margin-top:14px}
.banner{display:flex;gap:24px;align-items:center;padding:16px 24px;color:#fff}
.banner.valid{background:var(--valid)}.banner.invalid{background:var(--invalid)}.banner.unknown{background:var(--unknown)}
.banner .word{font-size:40px;font-weight:800;letter-spacing:.04em}
.banner .deciding{font-size:18px;font-weight:600}
.banner a{color:#fff}
.banner .figures{opacity:.92;margin-top:4px}
.banner .teardown{margin-top:4px;font-weight:600}
.badge{display:inline-block;padding:0 7px;border-radius:10px;color:#fff;font-size:12px;font-weight:700;text-transform:uppercase}
.badge.valid{background:var(--valid)}.badge.invalid{background:var(--invalid)}.badge.unknown{background:var(--unknown)}
dl.grid{display:grid;grid-template-columns:150px 1fr;gap:2px 12px;margin:6px 0}
dt{color:#57606a}dd{margin:0}
ul.logs{margin:0;padding:0;list-style:none}ul.logs a{margin-right:8px}
table{border-collapse:collapse;margin:6px 0;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f2f4}
td.bad{color:var(--invalid)}
table.small{font-size:13px}
.note{color:#57606a;font-size:13px;margin:4px 0}
svg.plot{width:100%;height:auto;display:block;background:#fff;font-size:11px}
.axis text{fill:#57606a;font-size:10px}.axis .unit{font-style:italic}
.grid{stroke:#eaeef2;stroke-width:1}
.lane-bg{fill:#f6f8fa}
.lane-label{fill:#24292f;font-size:11px;font-weight:600}.lane-label .sub{fill:#8250df;font-weight:400;font-size:9px}
.inlane{fill:#fff;font-size:9px;font-weight:700;pointer-events:none}
.r-leader{fill:#2da44e}.r-follower{fill:#9ecae1}.r-candidate{fill:#fdae6b}.r-disconnected{fill:#bdbdbd}.r-down{fill:#444}
.znode{fill:#8250df}
.zkl{fill:#5fb87a;stroke:#fff;stroke-width:.8}.zkl.none{fill:#e0e0e0}
.band{fill:#d62728;fill-opacity:.08;stroke:#d62728;stroke-opacity:.25}.band.failed{fill-opacity:.03;stroke-dasharray:3 3}
.fault text{fill:#b31d28;font-size:10.5px;font-weight:600}
.fo-bar{fill:#57606a}.fo-bar.open{fill:#c62828}.fo-d{fill:#8250df}.fo-e{fill:#fdae6b}.fo-r{fill:#2da44e}
.hit{fill:transparent}
.ovl{fill:url(#hatch);stroke:#d62728}.ovl-bar{fill:#d62728}
.rej{stroke:#c62828;stroke-width:2.2;fill:none}
.cx-mark{fill:#c62828}
.phase{stroke:#57606a;stroke-dasharray:2 3}.phase-label{fill:#57606a;font-size:9px}
.pline{stroke:#24292f;stroke-width:1.2;stroke-dasharray:4 3}.pline.p99{stroke:#c62828}.pline.target{stroke:#8250df;stroke-dasharray:none}
.plabel{font-size:10px;fill:#24292f}
.dots{fill:none;stroke-linecap:round;stroke-width:3.2}
.dots.ok{stroke:var(--ok);stroke-opacity:.55}.dots.fail{stroke:var(--fail)}.dots.info{stroke:var(--info)}
.qline{fill:none;stroke-width:1.4}.qline.ok{stroke:var(--ok)}.qline.p99{stroke-dasharray:4 2}
.tline{fill:none;stroke-width:1.4}.tline.ok{stroke:var(--ok)}.tline.fail{stroke:var(--fail)}.tline.info{stroke:var(--info)}
.unavail{fill:#57606a;fill-opacity:.12}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;font-size:12px;color:#57606a;margin:4px 0}
.legend .sw{display:inline-block;width:14px;height:10px;margin-right:4px;vertical-align:-1px;border-radius:2px}
.sw.r-leader{background:#2da44e}.sw.r-follower{background:#9ecae1}.sw.r-candidate{background:#fdae6b}.sw.r-disconnected{background:#bdbdbd}.sw.r-down{background:#444}
.sw.znode{background:#8250df;height:4px}.sw.zkl{background:#5fb87a}.sw.band{background:rgba(214,39,40,.15);border:1px solid rgba(214,39,40,.4)}
.sw.ovl{background:repeating-linear-gradient(45deg,#d62728 0 3px,#fff 3px 6px)}.sw.rej{background:none;border:2px solid #c62828;width:10px}
.sw.ok{background:var(--ok)}.sw.fail{background:var(--fail)}.sw.info{background:var(--info)}.sw.unavail{background:rgba(87,96,106,.25)}
.sw.fo-d{background:#8250df}.sw.fo-e{background:#fdae6b}.sw.fo-r{background:#2da44e}
article.check{border-left:4px solid var(--invalid);padding:2px 12px;margin:12px 0;background:#fff8f8}
article.check.unknown{border-color:var(--unknown);background:#fffaf0}
.cxop rect{stroke:#24292f;stroke-width:1.4}.cxop.ok rect{fill:var(--ok)}.cxop.fail rect{fill:var(--fail)}.cxop.info rect{fill:var(--info)}
.cxop text{font-size:10px;font-weight:700;fill:#24292f}
.ctxop{opacity:.4}.ctxop.ok{fill:var(--ok)}.ctxop.fail{fill:var(--fail)}.ctxop.info{fill:var(--info)}
.cxev{fill:none;stroke:#c62828;stroke-width:2.5}
.cxline{stroke:#c62828;stroke-width:2;stroke-dasharray:5 3}
.cxspan{fill:#c62828;fill-opacity:.08;stroke:#c62828;stroke-opacity:.5}
.hl rect,.cxev.hl,.cxline.hl,.cxspan.hl,rect.hl{stroke:#ffbf00 !important;stroke-width:3 !important}
tr.hl{background:#fff3c4}
table.cx td:nth-child(3){font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
pre{max-height:360px;overflow:auto;background:#f6f8fa;padding:8px;font-size:12px}
footer{text-align:center;color:#57606a;font-size:12px;padding:16px}
"#;

/// Highlight a counterexample row and its marks together; record script
/// errors on `<body data-js-errors>` (the Chromium test reads them).
pub(super) const JS: &str = r#"
(function(){
var errs=[];
window.addEventListener('error',function(e){errs.push(String(e.message));document.body.setAttribute('data-js-errors',errs.join(' | '));});
function hl(ids,on){ids.split(' ').forEach(function(id){document.querySelectorAll('[data-cx~="'+id+'"]').forEach(function(el){el.classList.toggle('hl',on);});});}
document.querySelectorAll('[data-cx]').forEach(function(el){var ids=el.getAttribute('data-cx');
el.addEventListener('mouseenter',function(){hl(ids,true);});el.addEventListener('mouseleave',function(){hl(ids,false);});});
document.body.setAttribute('data-js','ok');
})();
"#;
