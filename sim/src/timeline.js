// Draws the run's timeline (an SVG) from the JSON in #data; every item
// carries its details in a <title> (hover) and shows them in #detail
// when clicked.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("data").textContent);
  var NS = "http://www.w3.org/2000/svg";
  var LABEL = 90, WIDTH = 1600, LANE = 30, TOP = 20;
  var end = Math.max(data.end, 1);
  var x = function (t) { return LABEL + (t / end) * (WIDTH - LABEL - 10); };
  var svg = document.createElementNS(NS, "svg");
  svg.setAttribute("width", WIDTH);
  svg.setAttribute("height", TOP + LANE * data.lanes.length + 10);
  var detail = document.getElementById("detail");
  function el(name, attrs, parent, text) {
    var e = document.createElementNS(NS, name);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) {
      var title = document.createElementNS(NS, "title");
      title.textContent = text;
      e.appendChild(title);
      e.addEventListener("click", function () { detail.textContent = text; });
    }
    parent.appendChild(e);
    return e;
  }
  var lanes = {};
  data.lanes.forEach(function (lane, i) {
    var y = TOP + i * LANE;
    var g = el("g", { "class": "lane", "data-lane": lane[0] }, svg);
    el("rect", { "class": "lane-bg", x: LABEL, y: y, width: WIDTH - LABEL - 10, height: LANE - 2 }, g);
    el("text", { "class": "lane-label", x: 4, y: y + LANE / 2 + 4 }, g).textContent = lane[1];
    lanes[lane[0]] = { g: g, y: y };
  });
  for (var s = 0; s <= 10; s++) {
    var t = end * s / 10;
    el("text", { "class": "axis", x: x(t) - 8, y: 12 }, svg).textContent = (t / 1e9).toFixed(1) + "s";
  }
  var ROLE = { leader: 1, follower: 1 };
  var isServer = function (id) { return /^s\d/.test(id); };
  data.spans.forEach(function (sp) {
    var lane = lanes[sp[0]];
    if (!lane) return;
    // A server's roles fill its lane's upper half, its faults the lower
    // half; other lanes' spans fill the lane.
    var y = lane.y + 4, h = LANE - 10;
    if (isServer(sp[0])) {
      y = ROLE[sp[3]] ? lane.y + 2 : lane.y + LANE / 2;
      h = LANE / 2 - 3;
    }
    el("rect", { "class": "span " + sp[3], x: x(sp[1]), y: y,
      width: Math.max(x(sp[2]) - x(sp[1]), 1), height: h }, lane.g, sp[4]);
  });
  var most = 1;
  data.commits.forEach(function (c) { most = Math.max(most, c[2]); });
  data.commits.forEach(function (c) {
    var lane = lanes[c[0]];
    if (!lane) return;
    var h = Math.max(1, (LANE / 2 - 4) * c[2] / most);
    el("rect", { "class": "commits", x: x(c[1]), y: lane.y + LANE - 3 - h,
      width: Math.max(x(c[1] + data.bucket) - x(c[1]) - 0.5, 0.5), height: h },
      lane.g, c[2] + " entries applied");
  });
  data.marks.forEach(function (m) {
    var lane = lanes[m[0]];
    if (!lane) return;
    el("line", { "class": "mark " + m[2], x1: x(m[1]), x2: x(m[1]),
      y1: lane.y + 1, y2: lane.y + LANE - 3 }, lane.g, (m[1] / 1e9).toFixed(6) + "s " + m[3]);
  });
  document.getElementById("timeline").appendChild(svg);
  var bad = data.marks.filter(function (m) { return m[2] === "violation"; });
  var verdict = document.getElementById("verdict");
  verdict.textContent = bad.length ? bad.map(function (m) { return m[3]; }).join("\n") : "pass";
  verdict.className = bad.length ? "fail" : "pass";
  document.body.setAttribute("data-rendered", data.lanes.length + " lanes");
})();
