//! The review as Markdown and as one self-contained HTML page (inline SVG, no scripts),
//! laid out to read on a laptop screen: a contents list of one-sentence answers first, then
//! one section per question.

use super::{Block, Inputs, Section};
use crate::{
    html::{esc, STYLE},
    summary::markdown_table,
};

/// Narrower than the report's page, and wide tables scroll inside their own box.
const REVIEW_STYLE: &str = "body{max-width:1100px;line-height:1.45}
.answer{font-size:16px;background:#eef5ff;border-left:4px solid #2a6fdb;padding:8px 12px;margin:8px 0}
.scroll{overflow-x:auto;max-width:100%}.conditions{color:#444}
nav ol{padding-left:20px}nav li{margin:4px 0}figure{margin:8px 0}
th:first-child{text-align:left}td:first-child{white-space:nowrap}";

/// A section of the per-run report embedded in the review, drawn once per format.
pub fn embed(section: impl Fn(crate::links::TableFn) -> Option<String>) -> Option<Block> {
    let md = section(&|h: &[&str], rows: &[Vec<String>]| markdown_table(h, rows))?;
    let html = section(&|h: &[&str], rows: &[Vec<String>]| {
        html_table(&h.iter().map(|x| x.to_string()).collect::<Vec<_>>(), rows)
    })?;
    Some(Block::Embedded {
        md,
        html: html
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                if l.starts_with("<div class=scroll><table") {
                    l.to_owned()
                } else {
                    format!("<p>{}</p>", esc(l.trim()))
                }
            })
            .collect(),
    })
}

fn html_table<H: AsRef<str>>(headers: &[H], rows: &[Vec<String>]) -> String {
    format!(
        "<div class=scroll>{}</div>",
        crate::html::table_html(headers, rows)
    )
}

fn header_lines(inputs: &Inputs) -> Vec<String> {
    let mut v = vec![format!(
        "{} run(s): {}.",
        inputs.runs.len(),
        inputs
            .runs
            .iter()
            .map(|(_, role, r)| format!("{} ({})", r.manifest.run_id, role.describe()))
            .collect::<Vec<_>>()
            .join(", ")
    )];
    for (_, _, run) in &inputs.runs {
        for b in crate::summary::banners(&run.manifest) {
            v.push(format!("{}: {b}", run.manifest.run_id));
        }
    }
    v
}

pub fn markdown(inputs: &Inputs, sections: &[Section]) -> String {
    let mut s = String::from("# stackbench design review\n\n");
    for l in header_lines(inputs) {
        s.push_str(&format!("{l}\n\n"));
    }
    s.push_str("## Answers at a glance\n\n");
    for sec in sections {
        s.push_str(&format!(
            "- **[{}](#{})** {}\n",
            sec.title, sec.id, sec.answer
        ));
    }
    for sec in sections {
        s.push_str(&format!(
            "\n<a id=\"{}\"></a>\n## {}\n\n**{}**\n\n",
            sec.id, sec.title, sec.answer
        ));
        for b in &sec.body {
            match b {
                Block::Text(t) => s.push_str(&format!("{t}\n\n")),
                Block::Table { headers, rows } => {
                    let h: Vec<&str> = headers.iter().map(String::as_str).collect();
                    s.push_str(&markdown_table(&h, rows));
                    s.push('\n');
                }
                Block::Embedded { md, .. } => s.push_str(&format!("{md}\n")),
            }
        }
        for (id, _) in &sec.charts {
            s.push_str(&format!("![{id}](plots/{id}.svg)\n\n"));
        }
        if !sec.conditions.is_empty() {
            s.push_str("When the answer changes:\n\n");
            for c in &sec.conditions {
                s.push_str(&format!("- {c}\n"));
            }
        }
    }
    s
}

/// The page; `svgs` are the sections' charts, drawn, by chart id.
pub fn html(inputs: &Inputs, sections: &[Section], svgs: &[(String, String)]) -> String {
    let mut s = format!(
        "<!doctype html><html><head><meta charset=utf-8><meta name=viewport content='width=device-width'><title>stackbench design review</title><style>{STYLE}\n{REVIEW_STYLE}</style></head><body><h1>stackbench design review</h1>"
    );
    for l in header_lines(inputs) {
        s.push_str(&format!("<p class=muted>{}</p>", esc(&l)));
    }
    s.push_str("<nav><h2>Answers at a glance</h2><ol>");
    for sec in sections {
        s.push_str(&format!(
            "<li><a href='#{}'><b>{}</b></a><br>{}</li>",
            sec.id,
            esc(&sec.title),
            esc(&sec.answer)
        ));
    }
    s.push_str("</ol></nav>");
    for sec in sections {
        s.push_str(&format!(
            "<section id='{}'><h2>{}</h2><p class=answer>{}</p>",
            sec.id,
            esc(&sec.title),
            esc(&sec.answer)
        ));
        for b in &sec.body {
            match b {
                Block::Text(t) => s.push_str(&format!("<p>{}</p>", esc(t))),
                Block::Table { headers, rows } => s.push_str(&html_table(headers, rows)),
                Block::Embedded { html, .. } => s.push_str(html),
            }
        }
        for (id, _) in &sec.charts {
            if let Some((_, svg)) = svgs.iter().find(|(i, _)| i == id) {
                s.push_str(&format!("<figure class=scroll>{svg}</figure>"));
            }
        }
        if !sec.conditions.is_empty() {
            s.push_str(
                "<p class=conditions><b>When the answer changes:</b></p><ul class=conditions>",
            );
            for c in &sec.conditions {
                s.push_str(&format!("<li>{}</li>", esc(c)));
            }
            s.push_str("</ul>");
        }
        s.push_str("</section>");
    }
    s.push_str("</body></html>\n");
    s
}
