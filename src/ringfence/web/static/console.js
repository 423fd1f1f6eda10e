// The console's only script: confirmations before destructive forms, and the agent's turn streamed live: a
// preset's typed events as a conversation (its text as it streams, each tool call collapsed with its status), a
// template's plain output as text.
"use strict";
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.dataset.confirm) {
    if (!window.confirm(form.dataset.confirm)) { event.preventDefault(); return; }
    const field = form.querySelector("input[name=confirm]");
    if (field) field.value = "yes";
  }
});

const prompt = document.getElementById("prompt");
if (prompt) {
  prompt.addEventListener("submit", async (event) => {
    event.preventDefault();
    const output = document.getElementById("output");
    const exit = document.getElementById("exit");
    const button = prompt.querySelector("button");
    output.textContent = "";
    const live = document.getElementById("live");
    live.textContent = "";
    const said = document.createElement("div");
    said.className = "msg prompt";
    said.textContent = new FormData(prompt).get("text");
    live.appendChild(said);
    let message = null;
    const tools = new Map();
    const add = (kind, text) => {
      const node = document.createElement("div");
      node.className = "msg " + kind;
      const p = document.createElement("p");
      p.textContent = text;
      node.appendChild(p);
      live.appendChild(node);
      return p;
    };
    exit.textContent = "running…";
    button.disabled = true;
    try {
      const answer = await fetch(prompt.action, { method: "POST", body: new FormData(prompt), credentials: "same-origin" });
      if (!answer.ok) { exit.textContent = "refused: " + (await answer.text()); return; }
      const reader = answer.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const kind = (block.match(/^event: (.*)$/m) || [])[1];
          const data = JSON.parse((block.match(/^data: (.*)$/m) || [, "{}"])[1]);
          if (kind === "output") { output.textContent += data.text; output.scrollTop = output.scrollHeight; }
          if (kind === "text") { (message = message || add("assistant", "")).textContent += data.text; }
          if (kind === "agent_error") { add("error", data.message); message = null; }
          if (kind === "tool_call") {
            message = null;
            let node = tools.get(data.id);
            if (!node) {
              node = document.createElement("details");
              node.className = "tool";
              node.appendChild(document.createElement("summary"));
              live.appendChild(node);
              tools.set(data.id, node);
            }
            node.className = "tool " + data.status;
            node.querySelector("summary").textContent = data.status + " · " + data.name + " " + data.input;
            if (data.result) {
              const pre = node.querySelector("pre") || node.appendChild(document.createElement("pre"));
              pre.className = "terminal";
              pre.textContent = data.result;
            }
          }
          if (kind === "exit") { exit.textContent = "the agent exited with " + data.code + (data.timed_out ? " (timed out)" : "") + "; reloading…"; }
        }
      }
      setTimeout(() => window.location.reload(), 600);  // the timeline, the change and the turns as stored
    } catch (problem) {
      exit.textContent = "the stream broke: " + problem;
    } finally {
      button.disabled = false;
    }
  });
}
