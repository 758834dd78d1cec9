"""Reports: the publication of one country and period rendered as a self-contained HTML file and Markdown."""
